"""Test-channel metrics: flags by the three-sigma rule, compared with the labels (docs/images/rcf.md, "Metrics").

A row is flagged anomalous when its score is above mean + 3·std of the test scores (population std,
one-sided since high means anomalous: AWS's guide does not say which).
Labels: 1 = anomaly, 0 = normal. A ratio with a zero denominator is 0 (as scikit-learn's zero_division=0).
"""

from __future__ import annotations

import numpy as np

from common.errors import UserError
from common.metrics import MetricDefinition

SIGMAS = 3.0

# Published (#quality_metric lines); test:f1 is the tuning objective and is printed last.
QUALITY = {
    "accuracy": MetricDefinition("test:accuracy", maximize=True),
    "precision": MetricDefinition("test:precision", maximize=True),
    "recall": MetricDefinition("test:recall", maximize=True),
    "precision_negative": MetricDefinition("test:precision_negative", maximize=True),
    "recall_negative": MetricDefinition("test:recall_negative", maximize=True),
    "f1_negative": MetricDefinition("test:f1_negative", maximize=True),
    "f1": MetricDefinition("test:f1", maximize=True, tunable=True),
}
# The same values in the #test_score form other first-party images print.
TEST_SCORE = {name: MetricDefinition(d.name, maximize=True, style="test_score") for name, d in QUALITY.items()}


def check_labels(labels: np.ndarray | None, where: str) -> np.ndarray:
    if labels is None or labels.ndim != 2 or labels.shape[1] != 1:
        raise UserError(f"The test channel needs one label per row (1 = anomaly, 0 = normal); {where} has none.")
    values = labels[:, 0]
    if not np.isin(values, (0.0, 1.0)).all():
        bad = values[~np.isin(values, (0.0, 1.0))][0]
        raise UserError(f"Test labels must be 1 (anomaly) or 0 (normal); {where} holds {float(bad)!r}.")
    return values.astype(bool)


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def three_sigma_metrics(scores: np.ndarray, anomalous: np.ndarray, eval_metrics: tuple[str, ...]) -> dict[str, float]:
    """Metric name -> value, in printing order, f1 last."""
    cutoff = scores.mean() + SIGMAS * scores.std()
    flagged = scores > cutoff
    tp = int(np.sum(flagged & anomalous))
    fp = int(np.sum(flagged & ~anomalous))
    fn = int(np.sum(~flagged & anomalous))
    tn = int(np.sum(~flagged & ~anomalous))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    out: dict[str, float] = {}
    if "accuracy" in eval_metrics:
        out["accuracy"] = _ratio(tp + tn, len(scores))
    if "precision_recall_fscore" in eval_metrics:
        precision_negative, recall_negative = _ratio(tn, tn + fn), _ratio(tn, tn + fp)
        out.update(precision=precision, recall=recall, precision_negative=precision_negative,
                   recall_negative=recall_negative, f1_negative=_f1(precision_negative, recall_negative))
    out["f1"] = _f1(precision, recall)
    return out
