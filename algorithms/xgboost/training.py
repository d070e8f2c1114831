"""Algorithm-mode training (spec xgboost.md §1.3, §5-7): data, metrics, early stopping, checkpoints, hosts.

Every host parses its own files; DMatrix and xgb.train run through `collective.run`, on the thread where
XGBoost's collective lives, so gradient statistics, column counts and metrics are summed over hosts.
A host without data takes part with zero rows (nothing is dropped) and saves nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xgboost as xgb

from algorithms.xgboost import data as data_module
from algorithms.xgboost.checkpointing import XGBoostCheckpoints
from algorithms.xgboost.hyperparameters import XGBoostHyperparameters
from algorithms.xgboost.metric_names import CONTAINER_METRICS, maximize
from algorithms.xgboost.metrics import container_metric, format_line, print_line
from common.algorithm import TrainingJob
from common.errors import UserError
from common.paths import read_json

log = logging.getLogger(__name__)
CUSTOMER_ERRORS = (
    "label must be in [0,1] for logistic regression", "label must be in [0, num_class)",
    "Target is multiclass but average='binary'", "feature_names mismatch",
    "Check failed: preds.size() == info.labels_.size()", "AUC: the dataset only contains pos or neg samples",
    "base_score must be in (0,1) for logistic loss", "label must be nonnegative",
    "Parameter reg_lambda should be greater equal to 0",
)
DATA_DIVISION_HELP = ("see 'How to split data' for distributed XGBoost training in the SageMaker developer guide: "
                      "give each instance at least one file")


def fit(job: TrainingJob) -> bytes | None:
    """Train; the leader gets the model (UBJSON bytes), other hosts None."""
    hp: XGBoostHyperparameters = job.hyperparameters
    train_channel, val_channel = job.channels["train"], job.channels.get("validation")
    media = train_channel.config.media
    data_module.warn_duplicates(train_channel, val_channel)
    train = data_module.load(train_channel, media, bool(hp.csv_weights))
    validation = data_module.load(val_channel, media, bool(hp.csv_weights)) if val_channel else None
    _check_rows(job, train, validation)
    for part in (train, validation):
        if part is not None:
            data_module.check_labels(part, hp.objective_name, hp.num_class)
    params = hp.params()
    metrics, stop_metric = _metrics(hp, job)
    builtin = [m for m in metrics if m not in CONTAINER_METRICS]
    if builtin:
        params["eval_metric"] = builtin
    start, resumed = _resume(job, hp)
    rounds = hp.num_round - start
    if rounds <= 0:
        log.info("The checkpoint already has all %d rounds.", hp.num_round)
        return resumed if job.cluster.is_leader else None
    leader = job.cluster.is_leader
    checkpoints = _checkpoints(job)

    def work() -> bytes:
        dtrain = _dmatrix(train, params)
        evals = [(dtrain, "train")]
        if validation is not None:
            evals.append((_dmatrix(validation, params), "validation"))
        callbacks: list[Any] = [_Monitor(job, start, leader, checkpoints, hp.save_model_on_termination == "true")]
        if hp.early_stopping_rounds and validation is not None:  # no metric named: XGBoost's default one
            callbacks.append(xgb.callback.EarlyStopping(
                rounds=hp.early_stopping_rounds, metric_name=stop_metric, data_name="validation",
                maximize=maximize(stop_metric) if stop_metric else None, save_best=True))
        booster = xgb.train(params, dtrain, num_boost_round=rounds, evals=evals, verbose_eval=False,
                            custom_metric=container_metric(metrics, hp.objective_name, hp.num_class),
                            xgb_model=bytearray(resumed) if resumed else None, callbacks=callbacks)
        return bytes(booster.save_raw("ubj"))

    log.info("%s training on %d rows.", "Distributed" if job.cluster.world_size > 1 else "Single node", len(train))
    try:
        model = job.collective.run(work)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - XGBoost's errors: the user's (known texts) or ours
        raise _classify(exc, job) from None
    return model if leader else None


def _check_rows(job: TrainingJob, train: data_module.Data, validation: data_module.Data | None) -> None:
    if job.cluster.world_size == 1:
        if not len(train):
            raise UserError("The train channel holds no data rows.")
        if validation is not None and not len(validation):
            raise UserError("The validation channel is configured but holds no data rows.")
        return
    counts = job.collective.allreduce_sum(np.array([len(train) > 0], np.int64))
    if counts[0] == 0:
        raise UserError("No hosts received training data.")
    if not len(train) or (validation is not None and not len(validation)):
        what = "training" if not len(train) else "validation"
        log.warning("%s received no %s data and takes part with zero rows; %s.", job.cluster.current_host, what,
                    DATA_DIVISION_HELP)


def _metrics(hp: XGBoostHyperparameters, job: TrainingJob) -> tuple[list[str], str | None]:
    """The metrics to print, and the early-stopping metric (HPO objective, else the last one listed)."""
    metrics = list(hp.eval_metric or ())
    raw = read_json(job.paths.hyperparameters, default={})
    tuning = str(raw.get("_tuning_objective_metric", "")).strip().strip('"')
    tuned = tuning.split(":", 1)[1] if ":" in tuning else ""
    if "_kfold" in raw:
        log.warning("_kfold cross-validation is not implemented in this image; training one model instead.")
    if tuned and tuned not in metrics:
        metrics = sorted([*metrics, tuned])  # upstream sorts the union so hosts agree on the order
    stop = tuned or (metrics[-1] if metrics else None)
    if hp.early_stopping_rounds and "validation" not in job.channels:
        log.warning("early_stopping_rounds needs a validation channel; training runs all %d rounds.", hp.num_round)
    elif hp.early_stopping_rounds and not stop:
        log.info("early_stopping_rounds without eval_metric: stopping on XGBoost's default metric for %s "
                 "(the 1.3-1 and later images silently do not stop at all).", hp.objective_name)
    return metrics, stop


def _checkpoints(job: TrainingJob) -> XGBoostCheckpoints | None:
    """Checkpoints are on when checkpointconfig.json exists (SageMaker writes it for CheckpointConfig)."""
    if not job.paths.checkpoint_config.exists():
        return None
    return XGBoostCheckpoints(job.paths.checkpoints)


def _resume(job: TrainingJob, hp: XGBoostHyperparameters) -> tuple[int, bytes | None]:
    """(rounds already done, model) from the leader's newest checkpoint, the same on every host."""
    checkpoints = _checkpoints(job)
    latest = checkpoints.latest() if checkpoints is not None and job.cluster.is_leader else None
    if job.cluster.world_size > 1:
        latest = job.collective.broadcast(latest)
    if latest is None:
        return 0, None
    number, model = latest
    log.info("Resuming from checkpoint xgboost-checkpoint.%d: %d of %d rounds left.", number,
             max(0, hp.num_round - number - 1), hp.num_round)
    return number + 1, model


def _dmatrix(part: data_module.Data, params: dict[str, Any]) -> Any:
    return data_module.dmatrix(part, params.get("nthread", -1))


def _classify(exc: Exception, job: TrainingJob) -> Exception:
    text = str(exc)
    for fragment in CUSTOMER_ERRORS:
        if fragment in text:
            return UserError(f"XGBoost rejected the data or parameters: {_first_line(text)}")
    if type(exc).__name__ == "ClusterError":
        return exc
    hint = " If another host failed first, its log has the cause." if job.cluster.world_size > 1 else ""
    return RuntimeError(f"XGB train call failed with exception: {_first_line(text)}.{hint}")


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Stack trace")]
    reasons = [line.split("]: ", 1)[1] for line in lines if "]: " in line]
    return (reasons[-1] if reasons else (lines[0] if lines else text)).strip()


class _Monitor(xgb.callback.TrainingCallback):
    """Prints XGBoost's evaluation line (leader only), keeps the watchdog fed, writes checkpoints."""

    def __init__(self, job: TrainingJob, offset: int, leader: bool, checkpoints: XGBoostCheckpoints | None,
                 save_each_round: bool) -> None:
        super().__init__()
        self.job, self.offset, self.leader = job, offset, leader
        self.checkpoints, self.save_each_round = checkpoints, save_each_round

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        self.job.collective.alive()
        number = epoch + self.offset  # continues the round count of a resumed job
        if not self.leader:
            return False
        scores = [(d, m, float(v[-1][0] if isinstance(v[-1], tuple) else v[-1]))
                  for d, by_metric in evals_log.items() for m, v in by_metric.items()]
        if scores:
            print_line(format_line(number, scores))
        if self.checkpoints is not None or self.save_each_round:
            raw = bytes(model.save_raw("ubj"))
            if self.checkpoints is not None:
                self.checkpoints.save(number, raw)
            if self.save_each_round:
                self.job.paths.model.mkdir(parents=True, exist_ok=True)
                (self.job.paths.model / "xgboost-model").write_bytes(raw)
        return False
