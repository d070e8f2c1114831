"""The CatBoost image (docs/images/catboost.md): one host, CatBoost's native model file, JumpStart's responses.

Training fits `CatBoostClassifier` (Logloss, or MultiClass for more than two classes) or
`CatBoostRegressor` (RMSE) on the training pool with the validation pool as `eval_set`, early stopping
and the best model kept; CatBoost prints its own log, ending with `bestTest = <value>`, which every
published metric regex (`bestTest = ([0-9\\.]+)`) reads.

Categorical columns (categorical_index.json) may hold integers or strings in training; CatBoost keys a
category by its text, and integral numbers are normalised to their integer text (`3.0` -> `3`), so a
request's `3` finds training's `3` or `3.0`. Requests go through the shared numeric CSV reader, so
a model trained on string categories reads its text/csv requests as training data is read
(`common.tabular.tables.request_rows`), so `red` finds training's `red`; other models use the shared numeric reader.

Artifacts (no pickle): `model` (CatBoost's native binary format, what the guide tells users to load)
and `__models_info__.json`.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from algorithms.catboost.hyperparameters import (
    AUTO_METRIC,
    BINARY,
    MULTICLASS,
    REGRESSION,
    CatBoostHyperparameters,
    metric_problem,
)
from algorithms.catboost.snapshots import Snapshots
from common import stopping
from common.algorithm import Algorithm, TrainingJob
from common.checkpoints import job_state
from common.constraints import MAX_THREADS
from common.data import content_types as ct
from common.data.batch import Batch
from common.data.columns import Columns
from common.data.content_types import MediaType
from common.data.registry import RequestReader
from common.errors import UserError
from common.imports import without
from common.metrics import MetricDefinition
from common.model_channel import artifact_info, previous_model, read_info, write_info
from common.progress import Progress
from common.script_mode import ScriptMode
from common.serving.request import Options
from common.tabular.model import TabularAlgorithm
from common.tabular.tables import (
    CLASSIFICATION,
    Table,
    TextCategoryCsvReader,
    categorical_columns,
    count_columns,
    holdout,
    locate,
    problem_of,
    read_tables,
)

log = logging.getLogger(__name__)


def import_catboost() -> ModuleType:
    """catboost with pyarrow hidden from the pandas that it imports (its C extension imports pandas whatever the
    input): pandas would import pyarrow, which the image ships for reading tables, for arrow-backed columns no
    code here makes (0.04 s of every job and worker). pyarrow imported before stays as it is."""
    with without("pyarrow"):
        import catboost

    return catboost


MODEL_FILE = "model"
METRIC_NAMES = ("RMSE", "MAE", "MedianAbsoluteError", "R2", "Logloss", "Precision", "Recall", "F1", "AUC",
                "MultiClass", "Accuracy", "BalancedAccuracy")
MAXIMIZE = {"R2", "Precision", "Recall", "F1", "AUC", "Accuracy", "BalancedAccuracy"}


class CatBoostMetric(MetricDefinition):
    """CatBoost's final `bestTest = <value>`: one regex for every metric, the name only labels it."""

    def template(self, epoch: bool = False) -> str:
        return "bestTest = {value}"

    def line(self, host: str, value: float, epoch: int | None = None) -> str:
        return f"bestTest = {value!r}"

    @property
    def regex(self) -> str:
        return "bestTest = ([0-9\\.]+)"


class _IterationProgress:
    """A CatBoost callback counting iterations; a fit resumed from a snapshot counts from the snapshot's."""

    def __init__(self, iterations: int) -> None:
        self.progress = Progress("boosting", iterations, "iterations")

    def after_iteration(self, info: Any) -> bool:
        if self.progress.done == 0:
            self.progress.start = self.progress.done = info.iteration - 1
        self.progress.advance()
        return True


class _Flushing:
    """CatBoost's log stream: stdout, flushed per write, so metric lines are never held back."""

    def write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()


class CatBoost(TabularAlgorithm[CatBoostHyperparameters]):
    name = "catboost"
    Hyperparameters = CatBoostHyperparameters
    metrics = tuple(CatBoostMetric(n, maximize=n in MAXIMIZE, tunable=True) for n in METRIC_NAMES)
    metrics_note = ("on CatBoost's iteration lines learn: (when CatBoost computes it) is measured on the training "
                    "rows and test: and best: on the validation rows (the validation channel, or the 20 % of the "
                    "training rows held out when there is none); the final bestTest line, which every metric "
                    "definition reads, is the best validation value of eval_metric, that of the iteration whose "
                    "model is kept.")
    script_mode = ScriptMode("CatBoost", model_fn=lambda model_dir: _native_model(Path(model_dir) / MODEL_FILE))

    def __init__(self, model: Any, info: dict[str, Any]) -> None:
        self.model = model
        self.info = info
        self.problem_type = info["problem_type"]
        self.categorical = tuple(int(i) for i in model.get_cat_feature_indices())
        self.num_features = len(model.feature_names_)
        self.threads = int(os.environ.get("OMP_NUM_THREADS", "") or -1)

    # ---- training -------------------------------------------------------------------------
    @classmethod
    def train(cls, job: TrainingJob[CatBoostHyperparameters]) -> CatBoost | None:
        catboost = import_catboost()

        if job.cluster.world_size > 1:
            raise UserError(f"CatBoost trains on one instance only (CPU), but this job has {job.cluster.world_size} "
                            f"hosts ({', '.join(job.cluster.hosts)}); set instance_count=1.")
        hp = job.hyperparameters
        train, validation = _load(job)
        problem, num_classes = problem_of(np.concatenate([train.labels, validation.labels]), hp.problem_type)
        params = _params(hp, problem, num_classes)
        log.info("Training a %s model (%d classes) on %d rows, validating on %d rows, %d features.",
                 problem, num_classes, len(train), len(validation), train.features.shape[1])
        estimator = catboost.CatBoostClassifier if problem == CLASSIFICATION else catboost.CatBoostRegressor
        with previous_model(job.paths.data, job.channels) as previous, tempfile.TemporaryDirectory() as scratch:
            init_model = str(previous.require(MODEL_FILE, problem, num_classes)) if previous else None
            state = job_state(hp, train.features.shape, len(validation), init_model is not None)
            snapshots = Snapshots(job.checkpoints, state, hp.iterations)
            model = estimator(**params, **snapshots.params(Path(scratch)))
            try:
                model = _fit(model, train, validation, init_model, snapshots)
            except catboost.CatBoostError as exc:
                raise UserError(f"CatBoost rejected the job: {str(exc).strip()}") from None
        info = artifact_info(previous, problem_type=problem, num_classes=num_classes,
                             categorical_features=list(train.categorical), best_iteration=model.get_best_iteration(),
                             string_categories=any(v.dtype == object for v in train.categories.values()),
                             catboost_version=catboost.__version__)
        return cls(model, info)

    # ---- artifact ---------------------------------------------------------------------------
    def save(self, model_dir: Path) -> None:
        self.model.save_model(str(model_dir / MODEL_FILE))
        write_info(model_dir, self.info)

    @classmethod
    def load(cls, model_dir: Path) -> Algorithm:
        catboost = import_catboost()

        path = model_dir / MODEL_FILE
        if not path.is_file():
            raise UserError(f"The CatBoost model file '{MODEL_FILE}' is missing from the model directory {model_dir}.")
        model = catboost.CatBoost()
        model.load_model(str(path))
        info = read_info(model_dir)
        if "problem_type" not in info:
            loss = str(model.get_all_params().get("loss_function", "RMSE"))
            info["problem_type"] = CLASSIFICATION if loss in ("Logloss", "CrossEntropy", "MultiClass") else "regression"
        return cls(model, info)

    def export(self) -> dict[str, np.ndarray]:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            dump = Path(scratch) / "model.json"
            self.model.save_model(str(dump), format="json")
            text = dump.read_text()
        return {
            "feature_names": np.asarray(self.model.feature_names_),
            "feature_importance": np.asarray(self.model.get_feature_importance(), np.float64),
            "model_dump": np.asarray(text),
        }

    # ---- inference --------------------------------------------------------------------------

    def request_reader(self, media: MediaType) -> RequestReader:
        """Models trained on string categories read text/csv requests themselves (strings kept)."""
        if self.info.get("string_categories") and media.name == ct.CSV:
            return TextCategoryCsvReader(self.num_features, self.categorical)
        return super().request_reader(media)

    def predict(self, batch: Batch, options: Options) -> Columns:
        batch.check_width(self.num_features, "the model's feature count")
        rows = batch.features if batch.features.dtype == object else _with_categories(batch, self.categorical)
        if self.problem_type != CLASSIFICATION:
            prediction = self.model.predict(rows, prediction_type="RawFormulaVal", thread_count=self.threads)
            return {"prediction": np.asarray(prediction, np.float64).reshape(len(rows))}
        probabilities = np.asarray(self.model.predict(rows, prediction_type="Probability",
                                                      thread_count=self.threads), np.float64)
        columns: Columns = {"probabilities": probabilities}
        if options.verbose:
            columns["predicted_label"] = np.argmax(probabilities, axis=1)
        return columns


def _fit(model: Any, train: Table, validation: Table, init_model: str | None, snapshots: Snapshots) -> Any:
    """The fitted model; CatBoost's C++ loop checks for signals through Python, where the stop is only recorded
    (`stopping.deferred`) so that the snapshot callback ends the fit cleanly."""
    catboost = import_catboost()

    def fit() -> Any:
        progress = _IterationProgress(snapshots.iterations)
        with stopping.deferred():
            fitted = model.fit(_pool(train), eval_set=_pool(validation), use_best_model=True, log_cout=_Flushing(),
                               log_cerr=_Flushing(), init_model=init_model, callbacks=[snapshots, progress])
        progress.progress.finish()
        return fitted

    try:
        return fit()
    except catboost.CatBoostError as exc:
        if not snapshots.resuming or "snapshot" not in str(exc).lower():
            raise
        log.warning("CatBoost cannot resume from its snapshot (%s); starting over.", str(exc).strip())
        snapshots.discard()
        return fit()


def _with_categories(batch: Batch, categorical: tuple[int, ...]) -> np.ndarray:
    """Float rows, with categorical columns as Python ints (CatBoost keys categories by their text)."""
    dense = batch.dense()
    if not categorical:
        return dense
    rows = dense.astype(object)
    for index in categorical:
        values = dense[:, index]
        bad = ~np.isfinite(values) | (values != np.floor(values))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(f"{batch.where(row).capitalize()}, column {index + 1} is categorical and must hold an "
                            f"integer; got {'an empty cell' if np.isnan(values[row]) else repr(float(values[row]))}.")
        rows[:, index] = values.astype(np.int64).tolist()
    return rows


def _pool(table: Table) -> Any:
    catboost = import_catboost()

    if not table.categorical:
        return catboost.Pool(table.features, table.labels)
    import pandas as pd

    frame = pd.DataFrame({i: table.categories.get(i, table.features[:, i]) for i in range(table.features.shape[1])})
    return catboost.Pool(frame, table.labels, cat_features=list(table.categorical))


def _load(job: TrainingJob[CatBoostHyperparameters]) -> tuple[Table, Table]:
    layout = locate(job.paths.data, set(job.channels))
    n_columns = count_columns(layout.train_files[0])
    categorical = categorical_columns(layout.categorical_json, n_columns)
    train = read_tables(layout.train_files, n_columns, categorical, strings_ok=True)
    if layout.validation_files:
        return train, read_tables(layout.validation_files, n_columns, categorical, strings_ok=True)
    rows, held_out = holdout(len(train))
    log.info("No validation data: %d of the training rows are held out (20 %%, seed 200).", len(held_out))
    return train.take(rows), train.take(held_out)


def _params(hp: CatBoostHyperparameters, problem: str, num_classes: int) -> dict[str, Any]:
    hp = hp.as_float32()
    if problem == CLASSIFICATION:
        loss, task = ("Logloss", BINARY) if num_classes == 2 else ("MultiClass", MULTICLASS)
    else:
        loss, task = "RMSE", REGRESSION
    if hp.eval_metric != "auto" and (wrong := metric_problem(hp.eval_metric, (task,))):
        raise UserError(wrong + ".")
    threads = hp.thread_count
    if threads > MAX_THREADS:
        log.warning("thread_count=%d is more threads than any instance has cores; using %d.", threads, MAX_THREADS)
        threads = MAX_THREADS
    params: dict[str, Any] = {
        "loss_function": loss, "eval_metric": AUTO_METRIC[task] if hp.eval_metric == "auto" else hp.eval_metric,
        "iterations": hp.iterations, "learning_rate": hp.learning_rate, "depth": hp.depth,
        "l2_leaf_reg": hp.l2_leaf_reg, "random_strength": hp.random_strength, "rsm": hp.rsm,
        "sampling_frequency": hp.sampling_frequency, "bagging_temperature": hp.bagging_temperature,
        "grow_policy": hp.grow_policy, "random_seed": hp.random_seed, "thread_count": threads,
        "verbose": hp.verbose,
    }
    if hp.early_stopping_rounds > 0:
        params["early_stopping_rounds"] = hp.early_stopping_rounds
    if hp.grow_policy == "Lossguide":
        params["max_leaves"] = hp.max_leaves
        if hp.sampling_frequency == "PerTreeLevel":  # the always-sent default; Lossguide has no tree levels
            del params["sampling_frequency"]
    if hp.grow_policy in ("Lossguide", "Depthwise"):
        params["min_data_in_leaf"] = hp.min_data_in_leaf
    if hp.boosting_type != "Auto":
        params["boosting_type"] = hp.boosting_type
    if hp.max_bin != "Auto":
        params["border_count"] = hp.max_bin
    if problem == CLASSIFICATION and num_classes == 2:
        params["scale_pos_weight"] = hp.scale_pos_weight
    return params


def _native_model(path: Path) -> Any:
    catboost = import_catboost()

    model = catboost.CatBoost()
    model.load_model(str(path))
    return model
