"""Evaluation lines as XGBoost prints them, their published regexes, and container-computed metrics.

Line: `[<round>]\\t<set>-<metric>:<value>...` with a real TAB, five decimals (XGBoost's EvaluationMonitor);
CloudWatch shows the TAB as `#011`, so the regexes accept either.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from algorithms.xgboost.import_xgboost import xgboost
from algorithms.xgboost.metric_catalog import CONTAINER_METRICS, GUIDE_OBJECTIVES, VALIDATION_ONLY, maximize
from common.metrics import MetricDefinition, format_value

TAB_IN_LOGS = "(?:#011|\\t)"
NUMBER = "([-+]?[0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def format_line(round_number: int, scores: list[tuple[str, str, float]]) -> str:
    """`[3]\\ttrain-rmse:0.12345\\tvalidation-rmse:0.23456` from (set, metric, value) triples."""
    return f"[{round_number}]" + "".join(f"\t{data}-{metric}:{value:.5f}" for data, metric, value in scores)


class XGBoostMetric(MetricDefinition):
    """`train:rmse` printed inside XGBoost's evaluation line (not the first-party grammar)."""

    def template(self, epoch: bool = False) -> str:
        return "[{epoch}]\t" + f"{self.split}-{self.metric}:" + "{value}"

    def line(self, host: str, value: float, epoch: int | None = None) -> str:
        """One metric alone (training prints whole rounds with `format_line`)."""
        return f"[{epoch or 0}]\t{self.split}-{self.metric}:{format_value(value)}"

    @property
    def regex(self) -> str:
        return f".*\\[[0-9]+\\].*{TAB_IN_LOGS}{self.split}-{re.escape(self.metric)}:{NUMBER}.*"


def definitions() -> tuple[XGBoostMetric, ...]:
    names = [f"{split}:{m}" for m in GUIDE_OBJECTIVES for split in ("train", "validation")]
    names += [f"validation:{m}" for m in VALIDATION_ONLY]
    return tuple(XGBoostMetric(n, maximize=maximize(n.split(":")[1]), tunable=n.startswith("validation:"))
                 for n in names)


def print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# ---- container-computed metrics (docs/images/xgboost.md, "Metrics"), summed over hosts ------------------

REGRESSION = frozenset({"mse", "r2"})


def container_metric(names: list[str], objective: str, num_class: int | None) -> Callable[..., Any] | None:
    """XGBoost's `custom_metric` computing `names` from (transformed) predictions, or None."""
    wanted = [n for n in names if n in CONTAINER_METRICS]
    if not wanted:
        return None
    classes = num_class if objective.startswith("multi:") and num_class else 2
    threshold = 0.0 if objective in ("binary:logitraw",) or objective.startswith(("rank:", "survival:")) else 0.5

    def evaluate(predt: np.ndarray, dmatrix: Any) -> list[tuple[str, float]]:
        labels = dmatrix.get_label()
        predicted = _classes(predt, objective, threshold, len(labels))
        truth = np.clip(np.rint(labels), 0, classes - 1).astype(np.int64)
        confusion = np.bincount(truth * classes + np.clip(predicted, 0, classes - 1),
                                minlength=classes * classes).astype(np.float64)
        values = np.asarray(predt, np.float64).reshape(len(labels), -1)[:, 0]
        errors = values - labels
        regression = np.array([len(labels), labels.sum(), (labels.astype(np.float64) ** 2).sum(), (errors ** 2).sum()])
        confusion, regression = _summed(confusion), _summed(regression)
        return [(n, classification_metric(n, confusion.reshape(classes, classes)) if n not in REGRESSION
                 else regression_metric(n, regression)) for n in wanted]

    return evaluate


def _classes(predt: np.ndarray, objective: str, threshold: float, rows: int) -> np.ndarray:
    """Class per row: argmax of probabilities, softmax's index, or a threshold on the single output."""
    predt = np.asarray(predt).reshape(rows, -1) if rows else np.zeros((0, 1))
    if predt.shape[1] > 1:
        return predt.argmax(axis=1).astype(np.int64)
    if objective == "multi:softmax":
        return np.rint(predt[:, 0]).astype(np.int64)
    return (predt[:, 0] > threshold).astype(np.int64)


def _summed(stats: np.ndarray) -> np.ndarray:
    collective = xgboost().collective
    if collective.is_distributed():
        return np.asarray(collective.allreduce(stats, collective.Op.SUM))
    return stats


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> Any:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def classification_metric(name: str, confusion: np.ndarray) -> float:
    """From a (true x predicted) confusion matrix, as scikit-learn defines them (zero_division=0)."""
    total = confusion.sum()
    tp = np.diag(confusion)
    actual, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (actual + predicted) > 0
    precision, recall = _ratio(tp, predicted), _ratio(tp, actual)
    f1 = _ratio(2 * tp, actual + predicted)
    if name in ("accuracy", "precision_micro", "recall_micro"):
        return float(_ratio(tp.sum(), total))
    if name == "balanced_accuracy":
        return float(recall[actual > 0].mean()) if (actual > 0).any() else 0.0
    if name in ("f1", "f1_macro"):
        return float(f1[present].mean()) if present.any() else 0.0
    if name == "precision_macro":
        return float(precision[present].mean()) if present.any() else 0.0
    if name == "recall_macro":
        return float(recall[present].mean()) if present.any() else 0.0
    positive = min(1, len(tp) - 1)
    return float({"f1_binary": f1, "precision": precision, "recall": recall}[name][positive])


def regression_metric(name: str, stats: np.ndarray) -> float:
    n, total, squares, sse = stats.tolist()
    if name == "mse":
        return sse / n if n else 0.0
    variance = squares - total * total / n if n else 0.0
    return 1.0 - sse / variance if variance > 0 else 0.0
