"""Prediction columns and response layouts as the SageMaker XGBoost image writes them (docs/images/xgboost.md).

Environment, read when the model is loaded:
  SAGEMAKER_INFERENCE_OUTPUT     selectable keys, e.g. `predicted_label,probabilities`
  SAGEMAKER_BATCH                set by batch transform: one `str(prediction)` per line, whatever the Accept
  SAGEMAKER_XGBOOST_CSV_OUTPUT   `comma_joined`: the 1.0-1 image's text/csv body, every prediction on one
                                 line joined by commas (what older clients split on ","), or `per_line`, one
                                 prediction per line as the current images answer; default: what the emulated
                                 version (versions.py) answered
"""

from __future__ import annotations

import logging
import os

import numpy as np

from algorithms.xgboost import versions
from common.data.columns import DEFAULT_LAYOUT, Columns, ResponseLayout
from common.errors import UserError

log = logging.getLogger(__name__)
SELECTABLE_VAR, BATCH_VAR = "SAGEMAKER_INFERENCE_OUTPUT", "SAGEMAKER_BATCH"
CSV_OUTPUT_VAR = "SAGEMAKER_XGBOOST_CSV_OUTPUT"
KEYS = ("predicted_label", "labels", "probability", "probabilities", "raw_score", "raw_scores", "predicted_score")
_CLASSIFY = {"predicted_label", "labels", "raw_score", "raw_scores"}
ALLOWED = {
    "binary:logistic": _CLASSIFY | {"probability", "probabilities"},
    "binary:logitraw": _CLASSIFY, "binary:hinge": _CLASSIFY, "multi:softmax": _CLASSIFY,
    "multi:softprob": _CLASSIFY | {"probability", "probabilities"},
}


def selected_keys() -> list[str] | None:
    raw = os.environ.get(SELECTABLE_VAR)
    if raw is None:
        return None
    keys = [k for k in raw.replace(" ", "").lower().split(",") if k]
    unknown = [k for k in keys if k not in KEYS]
    if unknown or not keys:
        raise UserError(f"{SELECTABLE_VAR}='{raw}' names unknown keys; use a comma-separated list of "
                        + ", ".join(KEYS) + ".", status=500)
    return keys


def selectable_columns(preds: np.ndarray, objective: str, num_class: int, keys: list[str]) -> Columns:
    """The requested keys in the fixed table order; a key the objective lacks is NaN (and logged)."""
    if objective not in ALLOWED and not objective.startswith("reg:"):
        raise UserError(f"Objective `{objective}` unsupported for selectable inference predictions.", status=500)
    allowed = ALLOWED.get(objective, {"predicted_score"})
    n = len(preds)
    p = np.asarray(preds, np.float32)
    two = np.column_stack([1 - p, p]) if p.ndim == 1 else p
    classes = num_class if objective.startswith("multi:") else 2
    values = {
        "predicted_label": (p.argmax(axis=1) if p.ndim == 2 else (p > 0.5).astype(np.int64)
                            if objective == "binary:logistic" else (p > 0).astype(np.int64)
                            if objective == "binary:logitraw" else p),
        "labels": np.tile(np.arange(classes, dtype=np.int64), (n, 1)),
        "probability": p.max(axis=1) if p.ndim == 2 else p,
        "probabilities": two,
        "raw_score": p.max(axis=1) if p.ndim == 2 else p,
        "raw_scores": two,
        "predicted_score": p,
    }
    columns: Columns = {}
    for key in KEYS:
        if key in keys:
            if key not in allowed:
                log.warning("Selectable output '%s' does not apply to objective %s; it is NaN.", key, objective)
            columns[key] = values[key] if key in allowed else np.full(n, np.nan, np.float32)
    return columns


def response_layout(keys: list[str] | None) -> ResponseLayout:
    """How the writers lay out this endpoint's responses, from its environment."""
    batch = BATCH_VAR in os.environ
    if keys is not None:
        return ResponseLayout(numbers="native", csv_cells="python_quoted", csv_columns=tuple(keys),
                              csv_final_newline=batch)
    if batch:
        return ResponseLayout(plain_lines=True)
    csv_output = os.environ.get(CSV_OUTPUT_VAR) or versions.current().csv_output
    if csv_output.lower() == "comma_joined":
        return ResponseLayout(csv_cells="python", csv_row_separator=",", csv_final_newline=False)
    return DEFAULT_LAYOUT
