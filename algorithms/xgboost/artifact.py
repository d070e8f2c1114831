"""The model directory's file names: `xgboost-model`, or one file per fold for a k-fold job."""

from __future__ import annotations

MODEL_FILE = "xgboost-model"


def model_files(count: int) -> list[str]:
    """`xgboost-model`, or a k-fold job's `xgboost-model-0` .. `xgboost-model-<count - 1>`."""
    return [MODEL_FILE] if count == 1 else [f"{MODEL_FILE}-{i}" for i in range(count)]
