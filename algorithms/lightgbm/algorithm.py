"""The LightGBM image (docs/images/lightgbm.md): JumpStart's training pipeline and responses, native artifacts.

Training follows the observed `train.py`: `lgb.train(params, train, num_boost_round,
valid_sets=[val, train], valid_names=["val", "train"])` with `log_evaluation(1)` and
`early_stopping`, so LightGBM prints its own lines (`[7]\\ttrain's rmse: 0.41\\tval's rmse: 0.45`,
training first) that the guide's regexes (`rmse: ([0-9\\.]+)`) read.

Artifacts (no pickle): `model.txt`, LightGBM's native text model (best iteration only), and
`__models_info__.json` (`is_trained_on_input_data` plus what serving needs).

Responses (docs/images/lightgbm.md): JSON `{"probabilities-1d": ..., "probabilities": ..., "predicted_label": ...}`
(`predicted_label` with `;verbose`), `{"prediction": [...]}` for regression; JSON Lines: the same keys,
one object per row.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from algorithms.lightgbm import network
from algorithms.lightgbm.checkpointing import Checkpointing
from algorithms.lightgbm.hyperparameters import (
    BINARY_METRICS,
    METRICS,
    MULTICLASS_METRICS,
    REGRESSION_METRICS,
    LightGBMHyperparameters,
)
from common import stopping
from common.algorithm import Algorithm, TrainingJob
from common.checkpoints import job_state
from common.data.batch import Batch
from common.data.columns import Columns
from common.errors import UserError
from common.imports import without
from common.metrics import MetricDefinition
from common.model_channel import artifact_info, previous_model, read_info, write_info
from common.progress import Progress
from common.script_mode import ScriptMode
from common.serving.request import Options
from common.tabular.model import JUMPSTART_LAYOUT, TabularAlgorithm
from common.tabular.tables import (
    CLASSIFICATION,
    Table,
    categorical_columns,
    count_columns,
    holdout,
    locate,
    problem_of,
    read_tables,
)

log = logging.getLogger(__name__)
MODEL_FILE = "model.txt"
MAXIMIZE = {"auc", "average_precision", "auc_mu"}


class LightGBMMetric(MetricDefinition):
    """A metric as LightGBM prints it. `rmse` is the guide's unanchored regex (the first match of a line is
    the training value, as with the real algorithm); `validation:rmse` is anchored to `val's`."""

    def template(self, epoch: bool = False) -> str:
        return "[{epoch}]\tval's " + self.metric + ": {value}"

    def line(self, host: str, value: float, epoch: int | None = None) -> str:
        return f"[{epoch or 1}]\tval's {self.metric}: {value:g}"

    @property
    def metric(self) -> str:
        return self.name.split(":")[-1]

    @property
    def regex(self) -> str:
        prefix = "val's " if self.name.startswith("validation:") else ""
        return prefix + self.metric + ": ([0-9\\.]+)"


def _definitions() -> tuple[LightGBMMetric, ...]:
    names = [m for m in METRICS if m != "auto"]
    return tuple(LightGBMMetric(prefix + m, maximize=m in MAXIMIZE, tunable=True)
                 for prefix in ("", "validation:") for m in names)


class _StdoutLogger:
    """LightGBM's messages and evaluation lines on stdout, flushed (the metric lines must not wait)."""

    def info(self, message: str) -> None:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()

    def warning(self, message: str) -> None:
        self.info(message)


class _RoundProgress:
    """A LightGBM callback counting rounds: after their evaluation line (order 10), before early stopping (30),
    which ends the fit by raising."""

    before_iteration = False

    def __init__(self, progress: Progress) -> None:
        self.order = 20  # on the instance, or lgb.train sets one of its own
        self.progress = progress

    def __call__(self, env: Any) -> None:
        self.progress.advance()


class LightGBM(TabularAlgorithm[LightGBMHyperparameters]):
    name = "lightgbm"
    Hyperparameters = LightGBMHyperparameters
    metrics = _definitions()
    metrics_note = ("on each round's line [n] train's <metric>: <value> val's <metric>: <value>, train's evaluates the "
                    "model after that round on the training rows and val's on the validation rows (the validation "
                    "channel, or the 20 % of the training rows held out when there is none); the definitions without "
                    "validation: read the line's first value, the training one. On several hosts each host "
                    "evaluates its own rows.")
    # CSV: the probabilities once (JSON also carries them as "probabilities-1d"), then the label when asked.
    response_layout = replace(JUMPSTART_LAYOUT, csv_columns=("prediction", "probabilities", "predicted_label"))
    script_mode = ScriptMode("LightGBM", model_fn=lambda model_dir: import_lightgbm().Booster(
        model_file=str(Path(model_dir) / MODEL_FILE)))

    def __init__(self, booster: Any, info: dict[str, Any]) -> None:
        self.booster = booster
        self.info = info
        self.problem_type = info["problem_type"]
        self.num_classes = int(info.get("num_classes", 1))
        self.num_features = int(booster.num_feature())

    # ---- training -------------------------------------------------------------------------
    @classmethod
    def train(cls, job: TrainingJob[LightGBMHyperparameters]) -> LightGBM | None:
        lgb = import_lightgbm()

        hp = job.hyperparameters
        train, validation = _load(job)
        problem, num_classes = _agree_on_problem(job, train, validation, hp.problem_type)
        params = _params(hp, problem, num_classes, len(train))
        hosts = job.cluster.world_size
        if hosts > 1:
            params.update(network.params(job.cluster, job.collective, hp.tree_learner))
        lgb.register_logger(_StdoutLogger())
        log.info("Training a %s model (%d classes) on %d rows, validating on %d rows, %d features.",
                 problem, num_classes, len(train), len(validation), train.features.shape[1])
        train_set = lgb.Dataset(train.features, train.labels, categorical_feature=list(train.categorical) or "auto",
                                free_raw_data=True)
        val_set = lgb.Dataset(validation.features, validation.labels, reference=train_set)
        with previous_model(job.paths.data, job.channels) as previous:
            init_model = str(previous.require(MODEL_FILE, problem, num_classes)) if previous else None
            state = job_state(hp, job.cluster.rank, hosts, train.features.shape, init_model is not None)
            checkpointing = Checkpointing(job, state, hp.num_boost_round)
            progress = Progress("boosting", hp.num_boost_round, "rounds", start=checkpointing.rounds)
            callbacks = [lgb.log_evaluation(1), checkpointing, _RoundProgress(progress)]
            if hp.early_stopping_rounds > 0 and hosts == 1:
                callbacks.append(checkpointing.watch(lgb.early_stopping(hp.early_stopping_rounds, verbose=True)))
            elif hp.early_stopping_rounds > 0:
                log.warning("Disable early stopping feature in multi-instance training: each host validates on its "
                            "own rows, so hosts could stop at different rounds.")
            try:
                # LightGBM logs through a ctypes callback, which would swallow the SIGTERM exception: the
                # checkpointing callback raises it after the round instead.
                with stopping.deferred():
                    booster = lgb.train(params, train_set, hp.num_boost_round - checkpointing.rounds,
                                        valid_sets=[val_set, train_set], valid_names=["val", "train"],
                                        callbacks=callbacks, init_model=checkpointing.init_model(lgb, init_model))
            except lgb.basic.LightGBMError as exc:
                raise UserError(f"LightGBM rejected the job: {exc}") from None
            progress.finish()
        info = artifact_info(previous, problem_type=problem, num_classes=num_classes,
                             categorical_features=list(train.categorical), best_iteration=booster.best_iteration,
                             lightgbm_version=lgb.__version__)
        return cls(booster, info)

    # ---- artifact ---------------------------------------------------------------------------
    def save(self, model_dir: Path) -> None:
        self.booster.save_model(str(model_dir / MODEL_FILE))
        write_info(model_dir, self.info)

    @classmethod
    def load(cls, model_dir: Path) -> Algorithm:
        lgb = import_lightgbm()

        path = model_dir / MODEL_FILE
        if not path.is_file():
            hint = " (model.pkl is a pickled JumpStart model; retrain with this image)" \
                if (model_dir / "model.pkl").exists() else ""
            raise UserError(f"{MODEL_FILE} is missing from the model directory {model_dir}{hint}.")
        booster = lgb.Booster(model_file=str(path))
        info = read_info(model_dir)
        if "problem_type" not in info:
            objective = str(booster.dump_model(num_iteration=0).get("objective", "regression"))
            info["problem_type"] = CLASSIFICATION if objective.startswith(("binary", "multiclass")) else "regression"
            info["num_classes"] = 2 if objective.startswith("binary") else booster.num_model_per_iteration()
        return cls(booster, info)

    def export(self) -> dict[str, np.ndarray]:
        return {
            "feature_names": np.asarray(self.booster.feature_name()),
            "feature_importance_gain": self.booster.feature_importance("gain"),
            "feature_importance_split": self.booster.feature_importance("split").astype(np.int64),
            "model_dump": np.asarray(json.dumps(self.booster.dump_model())),
        }

    # ---- inference --------------------------------------------------------------------------

    def predict(self, batch: Batch, options: Options) -> Columns:
        batch.check_width(self.num_features, "the model's feature count")
        scores = self.booster.predict(batch.dense())
        if self.problem_type != CLASSIFICATION:
            return {"prediction": np.asarray(scores, np.float64)}
        if scores.ndim == 1:
            scores = np.column_stack([1.0 - scores, scores])
        columns: Columns = {"probabilities-1d": scores[:, 1:], "probabilities": scores}
        if options.verbose:
            columns["predicted_label"] = np.argmax(scores, axis=1)
        return columns


def _load(job: TrainingJob[LightGBMHyperparameters]) -> tuple[Table, Table]:
    layout = locate(job.paths.data, set(job.channels))
    n_columns = count_columns(layout.train_files[0])
    categorical = categorical_columns(layout.categorical_json, n_columns)
    train = read_tables(layout.train_files, n_columns, categorical, strings_ok=False)
    if layout.validation_files:
        validation = read_tables(layout.validation_files, n_columns, categorical, strings_ok=False)
    else:
        rows, held_out = holdout(len(train))
        train, validation = train.take(rows), train.take(held_out)
        log.info("No validation data: %d of the training rows are held out (20 %%, seed 200).", len(validation))
    if job.cluster.world_size > 1 and job.channels[_train_channel(job)].config.distribution == "FullyReplicated":
        share = np.arange(job.cluster.rank, len(train), job.cluster.world_size)
        train = train.take(share)
        log.info("FullyReplicated data on %d hosts: this host trains on every %d-th row from row %d.",
                 job.cluster.world_size, job.cluster.world_size, job.cluster.rank)
    return train, validation


def _train_channel(job: TrainingJob[LightGBMHyperparameters]) -> str:
    return "train" if "train" in job.channels else "training"


def _agree_on_problem(job: TrainingJob, train: Table, validation: Table, override: str) -> tuple[str, int]:
    """The task from the labels of every host (so every host builds the same objective)."""
    labels = np.unique(np.concatenate([np.unique(train.labels), np.unique(validation.labels)]))
    widths = set(job.collective.allgather(train.features.shape[1]))
    if len(widths) > 1:
        raise UserError(f"The hosts' training data have different column counts: {sorted(widths)}.")
    return problem_of(np.unique(np.concatenate(job.collective.allgather(labels))), override)


def import_lightgbm() -> Any:
    """lightgbm, with OpenMP threads that sleep when idle, and without scikit-learn or pandas (common.imports).

    OMP_WAIT_POLICY=PASSIVE (unless the user set it; it must precede libgomp's load): OpenMP's default
    spin-waiting collapses on shared or busy cores (20 bagged rounds on 1,600 rows took 4.5 s instead of
    0.02 s on this 2-core machine under load).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with without("sklearn", "pandas"):
        import lightgbm
    return lightgbm


def _params(hp: LightGBMHyperparameters, problem: str, num_classes: int, rows: int = 0) -> dict[str, Any]:
    """LightGBM's parameters; `rows` (this host's training rows, 0: unknown) checks that bagging keeps some."""
    if problem == CLASSIFICATION and num_classes == 2:
        objective, allowed, auto = "binary", BINARY_METRICS, "binary_logloss"
    elif problem == CLASSIFICATION:
        objective, allowed, auto = "multiclass", MULTICLASS_METRICS, "multi_logloss"
    else:
        objective, allowed, auto = "regression", REGRESSION_METRICS, "rmse"
    metric = auto if hp.metric == "auto" else hp.metric
    if metric not in allowed:
        raise UserError(f"metric '{hp.metric}' does not apply to {objective} training; use one of: "
                        + ", ".join(allowed) + ".")
    bagging_freq = hp.bagging_freq
    if hp.boosting == "goss" and bagging_freq:  # the always-sent bagging defaults; LightGBM refuses both
        log.info("boosting=goss samples rows itself: bagging_freq=%d is not used.", bagging_freq)
        bagging_freq = 0
    if bagging_freq and rows and int(hp.bagging_fraction * rows) < 1:
        raise UserError(f"Hyperparameter 'bagging_fraction' has value '{hp.bagging_fraction}', which bags no row "
                        f"of the {rows} training rows; give at least 1/{rows}, or bagging_freq=0.")
    params: dict[str, Any] = {
        "objective": objective, "metric": metric, "boosting": hp.boosting, "learning_rate": hp.learning_rate,
        "num_leaves": hp.num_leaves, "feature_fraction": hp.feature_fraction,
        "bagging_fraction": hp.bagging_fraction, "bagging_freq": bagging_freq, "max_depth": hp.max_depth,
        "min_data_in_leaf": hp.min_data_in_leaf, "max_delta_step": hp.max_delta_step,
        "lambda_l1": hp.lambda_l1, "lambda_l2": hp.lambda_l2, "min_gain_to_split": hp.min_gain_to_split,
        "tree_learner": hp.tree_learner, "feature_fraction_bynode": hp.feature_fraction_bynode,
        "max_bin": hp.max_bin, "num_threads": hp.num_threads, "verbosity": hp.verbosity,
    }
    if objective == "multiclass":
        params["num_class"] = num_classes
    if objective == "binary":
        params.update(scale_pos_weight=hp.scale_pos_weight, is_unbalance=hp.is_unbalance)
    if objective == "regression":
        params["tweedie_variance_power"] = hp.tweedie_variance_power
    return params
