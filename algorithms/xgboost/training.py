"""Algorithm-mode training (docs/images/xgboost.md): data, metrics, early stopping, checkpoints, hosts, k-fold.

Every host parses its own files; DMatrix and xgb.train run through `collective.run`, on the thread where
XGBoost's collective lives, so gradient statistics, column counts and metrics are summed over hosts.
A host without data takes part with zero rows (nothing is dropped) and saves nothing. With `_kfold`
(kfold.py) every host splits its own rows into the same number of folds and the hosts train fold after fold
together; each writes the out-of-fold predictions of its rows.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np

from algorithms.xgboost import data as data_module
from algorithms.xgboost import kfold, versions
from algorithms.xgboost.artifact import MODEL_FILE, model_files
from algorithms.xgboost.checkpointing import XGBoostCheckpoints
from algorithms.xgboost.hyperparameters import XGBoostHyperparameters
from algorithms.xgboost.import_xgboost import xgboost
from algorithms.xgboost.metric_catalog import CONTAINER_METRICS, maximize
from algorithms.xgboost.metrics import container_metric, format_line, print_line
from common import stopping
from common.algorithm import TrainingJob
from common.errors import UserError, join_problems
from common.paths import read_json_object
from common.progress import Progress

log = logging.getLogger(__name__)
xgb = xgboost()  # this module is imported only when algorithm-mode training starts (algorithm.py)
CUSTOMER_ERRORS = (
    "label must be in [0,1] for logistic regression", "label must be in [0, num_class)",
    "Target is multiclass but average='binary'", "feature_names mismatch",
    "Check failed: preds.size() == info.labels_.size()", "AUC: the dataset only contains pos or neg samples",
    "base_score must be in (0,1) for logistic loss", "label must be nonnegative",
    "Parameter reg_lambda should be greater equal to 0",
)
DATA_DIVISION_HELP = ("see 'How to split data' for distributed XGBoost training in the SageMaker developer guide: "
                      "give each instance at least one file")
Resume = tuple[int, bytes | None]  # (rounds already done, the checkpoint's model)


def fit(job: TrainingJob) -> list[bytes] | None:
    """Train; the leader gets the models (UBJSON bytes: one, or one per k-fold fold), other hosts None."""
    hp = job.hyperparameters
    raw = read_json_object(job.paths.hyperparameters, 'like {"num_round": "10"}')
    cv = kfold.settings(raw)
    train_channel, val_channel = job.channels["train"], job.channels.get("validation")
    media = train_channel.config.media
    data_module.warn_duplicates(train_channel, val_channel)
    train = data_module.load(train_channel, media, bool(hp.csv_weights))
    validation = data_module.load(val_channel, media, bool(hp.csv_weights)) if val_channel else None
    _check_rows(job, train, validation)
    _check_against_data(job, hp, train, validation)
    for part in (train, validation):
        if part is not None:
            data_module.check_labels(part, hp.objective_name, hp.num_class)
    if cv is not None:
        train, validation = _cross_validation_rows(job, cv, train, validation), None
    params = hp.params()
    metrics, stop_metric = _metrics(hp, job, raw, validation is not None or cv is not None)
    builtin = [m for m in metrics if m not in CONTAINER_METRICS]
    if builtin:
        params["eval_metric"] = builtin
    boosting = _Boosting(job, hp, params, metrics, stop_metric)
    leader = job.cluster.is_leader
    if hp.save_model_on_termination == "true":
        stopping.on_stop(lambda: _keep_model_files(job))
    hosts = "Distributed" if job.cluster.world_size > 1 else "Single node"
    if cv is not None:
        resumes = [_resume(job, hp, _checkpoints(job, f"model-{i}"), f"model-{i}/") for i in range(cv.models)]
        log.info("%s training: %d-round %d-fold cross-validation on %d rows.", hosts, cv.repeats, cv.folds, len(train))
        models, out_of_fold = _run(job, lambda: _cross_validate(boosting, cv, train, resumes))
        if len(train):
            out_of_fold.save(job.paths.output_data)
        return models if leader else None
    start, resumed = _resume(job, hp, _checkpoints(job))
    if hp.num_round - start <= 0:
        log.info("The checkpoint already has all %d rounds.", hp.num_round)
        return [resumed] if leader and resumed is not None else None

    def work() -> list[bytes]:
        dtrain = data_module.dmatrix(train, params.get("nthread", -1))
        dval = None if validation is None else data_module.dmatrix(validation, params.get("nthread", -1))
        booster = boosting.train(dtrain, dval, (start, resumed), _checkpoints(job), MODEL_FILE)
        return [bytes(booster.save_raw("ubj"))]

    log.info("%s training on %d rows.", hosts, len(train))
    models = _run(job, work)
    return models if leader else None


@dataclass
class _Boosting:
    """What every xgb.train call of a job shares."""

    job: TrainingJob
    hp: XGBoostHyperparameters
    params: dict[str, Any]
    metrics: list[str]
    stop_metric: str | None

    def __post_init__(self) -> None:
        self.custom_metric = container_metric(self.metrics, self.hp.objective_name, self.hp.num_class)

    def train(self, dtrain: Any, dval: Any | None, resume: Resume, checkpoints: XGBoostCheckpoints | None,
              model_file: str) -> Any:
        start, resumed = resume
        evals = [(dtrain, "train")] + ([(dval, "validation")] if dval is not None else [])
        callbacks: list[Any] = [_Monitor(self.job, start, checkpoints,
                                         model_file if self.hp.save_model_on_termination == "true" else None,
                                         self.hp.num_round)]
        if self.hp.early_stopping_rounds and dval is not None:  # no metric named: XGBoost's default one
            callbacks.append(xgb.callback.EarlyStopping(
                rounds=self.hp.early_stopping_rounds, metric_name=self.stop_metric, data_name="validation",
                maximize=maximize(self.stop_metric) if self.stop_metric else None, save_best=True))
        return xgb.train(self.params, dtrain, num_boost_round=self.hp.num_round - start, evals=evals,
                         verbose_eval=False, custom_metric=self.custom_metric,
                         xgb_model=bytearray(resumed) if resumed else None, callbacks=callbacks)

    def scores(self, booster: Any, dtrain: Any, dval: Any) -> dict[tuple[str, str], float]:
        """The model's metrics on both sets, as the last evaluation line would print them."""
        return kfold.scores(booster.eval_set([(dtrain, "train"), (dval, "validation")], 0, self.custom_metric,
                                             output_margin=False))


def _cross_validate(boosting: _Boosting, cv: kfold.CrossValidation, rows: data_module.Data,
                    resumes: list[Resume]) -> tuple[list[bytes], kfold.OutOfFold]:
    hp, leader = boosting.hp, boosting.job.cluster.is_leader
    objective = hp.objective_name
    classification = kfold.is_classification(objective)
    everything = data_module.dmatrix(rows, boosting.params.get("nthread", -1))
    folds = kfold.split(rows.labels, cv, classification, hp.seed or 0)
    names = model_files(cv.models)
    out_of_fold = kfold.OutOfFold(rows.labels, cv.repeats, classification)
    models, fold_scores = [], []
    for number, (train_rows, held_out) in enumerate(folds):
        log.info("Train cross validation fold %d (model %d of %d).", number % cv.folds + 1, number + 1, cv.models)
        dtrain, dval = everything.slice(train_rows), everything.slice(held_out)
        start, resumed = resumes[number]
        if hp.num_round - start <= 0:
            log.info("The checkpoint of fold model %d already has all %d rounds.", number, hp.num_round)
            booster = xgb.Booster()
            booster.load_model(bytearray(resumed or b""))
        else:
            booster = boosting.train(dtrain, dval, resumes[number], _checkpoints(boosting.job, f"model-{number}"),
                                     names[number])
        fold_scores.append(boosting.scores(booster, dtrain, dval))
        out_of_fold.record(held_out, number // cv.folds, kfold.fold_predictions(booster, dval, objective))
        models.append(bytes(booster.save_raw("ubj")))
        if (number + 1) % cv.folds == 0 and leader:
            log.info("The metrics of round %d cross validation", (number + 1) // cv.folds)
            print_line(kfold.summary_line(hp.num_round, fold_scores[-cv.folds:]))
    if cv.repeats > 1 and leader:
        log.info("The overall metrics of %d-round cross validation", cv.repeats)
        print_line(kfold.summary_line(hp.num_round, fold_scores))
    return models, out_of_fold


def _cross_validation_rows(job: TrainingJob, cv: kfold.CrossValidation, train: data_module.Data,
                           validation: data_module.Data | None) -> data_module.Data:
    rows = data_module.combine(train, validation)
    if rows.qid is not None:
        raise UserError("_kfold cannot split ranking data (rows with qid): XGBoost keeps query groups whole. "
                        "Train without _kfold.")
    if job.cluster.world_size == 1 and len(rows) < cv.folds:
        raise UserError(f"_kfold={cv.folds} needs at least {cv.folds} rows to hold out, but the train and "
                        f"validation channels hold {len(rows)}.")
    return rows


def _run(job: TrainingJob, work: Any) -> Any:
    """`work()` where XGBoost sees the hosts, its errors classified."""
    try:
        return job.collective.run(work)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - XGBoost's errors: the user's (known texts) or ours
        raise _classify(exc, job) from None


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


def _check_against_data(job: TrainingJob, hp: XGBoostHyperparameters, train: data_module.Data,
                        validation: data_module.Data | None) -> None:
    """The hyperparameters XGBoost would only reject mid-training, checked against the widest host's data."""
    width = max(p.features.shape[1] for p in (train, validation) if p is not None)
    sizes = np.array([width, len(train)], np.int64)
    if job.cluster.world_size > 1:
        sizes = job.collective.allreduce_max(sizes)
    problems = hp.check_data(int(sizes[0]), int(sizes[1]))
    if problems:
        raise UserError(join_problems(problems))


def _metrics(hp: XGBoostHyperparameters, job: TrainingJob, raw: dict[str, Any],
             validated: bool) -> tuple[list[str], str | None]:
    """The metrics to print, and the early-stopping metric (HPO objective, else the last one listed)."""
    legacy = versions.default_eval_metric(hp.objective_name)  # an emulated version before 1.3-1
    metrics = list(hp.eval_metric or ()) or ([legacy] if legacy else [])
    tuning = str(raw.get("_tuning_objective_metric", "")).strip().strip('"')
    tuned = tuning.split(":", 1)[1] if ":" in tuning else ""
    if tuned and tuned not in metrics:
        metrics = sorted([*metrics, tuned])  # upstream sorts the union so hosts agree on the order
    stop = tuned or (metrics[-1] if metrics else None)
    if hp.early_stopping_rounds and not validated:
        log.warning("early_stopping_rounds needs a validation channel; training runs all %d rounds.", hp.num_round)
    elif hp.early_stopping_rounds and not stop:
        log.info("early_stopping_rounds without eval_metric: stopping on XGBoost's default metric for %s "
                 "(the 1.3-1 and later images silently do not stop at all).", hp.objective_name)
    return metrics, stop


def _checkpoints(job: TrainingJob, folder: str = "") -> XGBoostCheckpoints | None:
    """Checkpoints are on when checkpointconfig.json exists (SageMaker writes it for CheckpointConfig); k-fold
    keeps each fold model's in its own folder `model-<i>`, as upstream."""
    if not job.paths.checkpoint_config.exists():
        return None
    return XGBoostCheckpoints(job.paths.checkpoints / folder if folder else job.paths.checkpoints)


def _resume(job: TrainingJob, hp: XGBoostHyperparameters, checkpoints: XGBoostCheckpoints | None,
            folder: str = "") -> Resume:
    """(rounds already done, model) from the leader's newest checkpoint, the same on every host."""
    latest = checkpoints.latest() if checkpoints is not None and job.cluster.is_leader else None
    if job.cluster.world_size > 1:
        latest = job.collective.broadcast(latest)
    if latest is None:
        return 0, None
    number, model = latest
    log.info("Resuming from checkpoint %sxgboost-checkpoint.%d: %d of %d rounds left.", folder, number,
             max(0, hp.num_round - number - 1), hp.num_round)
    if checkpoints is not None and job.cluster.is_leader:
        job.checkpoints.note(checkpoints.directory / f"xgboost-checkpoint.{number}",
                             f"round {number + 1} of {hp.num_round}")
    return number + 1, model


def _keep_model_files(job: TrainingJob) -> int:
    """save_model_on_termination on SIGTERM: only the xgboost-model files of the last round stay; exit 0."""
    if job.cluster.is_leader and job.paths.model.is_dir():
        for path in job.paths.model.iterdir():
            if not path.name.startswith(MODEL_FILE):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    log.info("Stopped by SIGTERM: save_model_on_termination keeps the model of the last finished round.")
    return 0


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
    """Prints XGBoost's evaluation line (leader only), keeps the watchdog fed, writes checkpoints and, with
    save_model_on_termination, the model file after every round; logs the rounds' progress."""

    def __init__(self, job: TrainingJob, offset: int, checkpoints: XGBoostCheckpoints | None,
                 model_file: str | None, num_round: int) -> None:
        super().__init__()
        self.job, self.offset, self.leader = job, offset, job.cluster.is_leader
        self.checkpoints, self.model_file, self.num_round = checkpoints, model_file, num_round
        self.progress = Progress("boosting", num_round, "rounds", start=offset)

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        self.job.collective.alive()
        if self.leader:
            self._report(model, epoch + self.offset, evals_log)  # continues the round count of a resumed job
        self.progress.advance()
        return False

    def after_training(self, model: Any) -> Any:
        self.progress.finish()
        return model

    def _report(self, model: Any, number: int, evals_log: dict) -> None:
        """Round `number`'s evaluation line, model file and checkpoint (the leader's)."""
        scores = [(d, m, float(v[-1][0] if isinstance(v[-1], tuple) else v[-1]))
                  for d, by_metric in evals_log.items() for m, v in by_metric.items()]
        if scores:
            print_line(format_line(number, scores))
        if self.checkpoints is not None or self.model_file is not None:
            raw = bytes(model.save_raw("ubj"))
            if self.model_file is not None:  # replaced whole: a SIGTERM mid-write must not leave half a model
                self.job.paths.model.mkdir(parents=True, exist_ok=True)
                tmp = self.job.paths.model / f".{self.model_file}.tmp"
                tmp.write_bytes(raw)
                tmp.replace(self.job.paths.model / self.model_file)
            if self.checkpoints is not None:
                saved = self.checkpoints.save(number, raw)
                self.job.checkpoints.note(saved, f"round {number + 1} of {self.num_round}")
