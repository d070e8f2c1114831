"""k-fold cross-validation, the hidden mode Autopilot uses (docs/images/xgboost.md): settings, folds, out-of-fold
predictions and the cross-validation metric lines. training.py runs the folds.

`_kfold=k` (`_num_cv_round=r`, default 1): the train and validation rows are one data set, split r times into k
folds (stratified for binary: and multi: objectives); every fold trains one model on the other k-1 folds,
evaluated per round on those ("train") and on the held-out fold ("validation"), saved as `xgboost-model-<i>`,
i = 0 .. k*r-1, which serving averages (or votes on). After every k folds a line
`[num_round]<TAB>train-<m>:<mean><TAB>validation-<m>:<mean>...` gives the means over those folds, and with r > 1 a
last such line the means over all folds: HPO reads that last line. `<output data dir>/predictions.csv`: one row
per input row, no header, `%f`: label, mean prediction (regression) or label, mean probability, majority class
(classification; probability of class 1 for binary:, of the predicted class for multi:).

Where the upstream image differs, on purpose: upstream evaluates every fold's rounds on the original train and
validation channels (the validation rows are in the fold's training data, so its "cross-validation" metric
is an in-sample one) and fails without a validation channel; here each fold is evaluated on its own held-out
rows, with or without a validation channel. The folds are seeded (`seed`, default 0) rather than random per
job, the means are of the saved (early-stopping: best-round) models, and multi:softmax / binary:logitraw
report probabilities (softmax / sigmoid of the margins) instead of class index and raw score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from algorithms.xgboost.metrics import format_line
from common.constraints import Integer
from common.errors import UserError, join_problems

log = logging.getLogger(__name__)
PREDICTIONS_FILE = "predictions.csv"
SETTINGS = (("_kfold", Integer(2)), ("_num_cv_round", Integer(1)))


@dataclass(frozen=True)
class CrossValidation:
    folds: int        # k
    repeats: int = 1  # r

    @property
    def models(self) -> int:
        return self.folds * self.repeats


def settings(raw: dict[str, Any]) -> CrossValidation | None:
    """`_kfold` / `_num_cv_round` from the raw hyperparameters (SageMaker passes `_` keys unchecked)."""
    if "_kfold" not in raw:
        if "_num_cv_round" in raw:
            log.warning("_num_cv_round has no effect without _kfold; training one model.")
        return None
    values, problems = {}, []
    for name, constraint in SETTINGS:
        if name in raw:
            text = str(raw[name])
            try:
                values[name] = constraint.parse(text)
            except ValueError:
                problems.append(f"Hyperparameter '{name}' has invalid value '{text}': must be {constraint.describe()}")
    if problems:
        raise UserError(join_problems(problems) + " (_kfold is the number of cross-validation folds, "
                        "_num_cv_round how many times the k-fold split is repeated.)")
    return CrossValidation(values["_kfold"], values.get("_num_cv_round", 1))


def is_classification(objective: str) -> bool:
    return objective.startswith(("binary:", "multi:"))


def split(labels: np.ndarray, cv: CrossValidation, stratified: bool, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, held-out rows) of each of the k*r folds, repeat after repeat; each row is held out once
    per repeat. Stratified: rows are shuffled within their class and dealt round-robin, class after class, so
    every fold gets its share of every class (within one row) and the folds' sizes differ by one at most."""
    rng = np.random.default_rng(seed & 0xFFFFFFFF)  # XGBoost's seed may be negative
    rows = len(labels)
    classes = np.unique(labels, return_inverse=True)[1].ravel() if stratified else np.zeros(rows, np.int64)
    if stratified and rows and np.bincount(classes).min() < cv.folds:
        log.warning("A class has fewer than _kfold=%d rows: some folds hold out none of it.", cv.folds)
    out = []
    for _ in range(cv.repeats):
        order = rng.permutation(rows)
        order = order[np.argsort(classes[order], kind="stable")]
        fold_of = np.empty(rows, np.int64)
        fold_of[order] = np.arange(rows) % cv.folds
        out.extend((np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(cv.folds))
    return out


def fold_predictions(booster: Any, dmatrix: Any, objective: str) -> np.ndarray:
    """Regression values, or probabilities: (n,) of class 1 for binary:, (n, classes) for multi:."""
    if objective == "multi:softmax":
        margins = np.asarray(booster.predict(dmatrix, output_margin=True), np.float64)
        exp = np.exp(margins - margins.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)
    predictions = np.asarray(booster.predict(dmatrix), np.float64)
    if objective == "binary:logitraw":
        return 1.0 / (1.0 + np.exp(-predictions))
    return predictions


class OutOfFold:
    """Every row's held-out predictions, one per repeat, to predictions.csv."""

    def __init__(self, labels: np.ndarray, repeats: int, classification: bool) -> None:
        self.labels, self.classification = np.asarray(labels, np.float64), classification
        self.values = np.full((len(labels), repeats), np.nan)   # prediction, or the probability written
        self.classes = np.zeros((len(labels), repeats), np.int64)

    def record(self, rows: np.ndarray, repeat: int, predictions: np.ndarray) -> None:
        if not self.classification:
            self.values[rows, repeat] = predictions
        elif predictions.ndim > 1:
            chosen = predictions.argmax(axis=1)
            self.classes[rows, repeat] = chosen
            self.values[rows, repeat] = predictions[np.arange(len(rows)), chosen]
        else:
            self.classes[rows, repeat] = predictions > 0.5
            self.values[rows, repeat] = predictions

    def table(self) -> np.ndarray:
        columns = [self.labels, self.values.mean(axis=1)]
        if self.classification:  # the most frequent class over the repeats; the smallest on ties
            votes = (self.classes[:, :, None] == np.arange(self.classes.max(initial=0) + 1)).sum(axis=1)
            columns.append(votes.argmax(axis=1).astype(np.float64))
        return np.column_stack(columns)

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / PREDICTIONS_FILE
        np.savetxt(path, self.table(), delimiter=",", fmt="%f")
        log.info("Stored the out-of-fold predictions in %s.", path)
        return path


def scores(evaluation: str) -> dict[tuple[str, str], float]:
    """`Booster.eval_set`'s `[0]\\ttrain-rmse:0.1\\tvalidation-rmse:0.2` as {(set, metric): value}."""
    out = {}
    for item in evaluation.split("\t")[1:]:
        name, value = item.rsplit(":", 1)
        data, metric = name.split("-", 1)
        out[(data, metric)] = float(value)
    return out


def summary_line(num_round: int, folds: list[dict[tuple[str, str], float]]) -> str:
    """Upstream's cross-validation line: `[num_round]`, then per metric the train and validation means."""
    metrics = [metric for data, metric in folds[0] if data == "train"]
    return format_line(num_round, [(data, metric, float(np.mean([f[(data, metric)] for f in folds])))
                                   for metric in metrics for data in ("train", "validation")])
