"""The SageMaker XGBoost versions an image tag emulates, and the defaults each one had.

One build serves every version: `make image-xgboost` tags it `sagemaker-xgboost:<version>` for each version
images.yaml lists, each tag setting SAGEMAKER_EMULATED_VERSION (the library inside is always the same, current
XGBoost). Without the variable the image behaves as the newest version. What differs between versions:

  csv_output        text/csv responses: `comma_joined` (1.0-1 and 1.2-1 put every prediction on one line,
                    joined by commas, which older clients split on ",") or `per_line` (one row per line, 1.2-2 on)
  pickled_model     the xgboost-model file training writes: a pickled Booster before 1.3-1 (what notebooks of
                    that time read back with pickle.load), XGBoost's native format from 1.3-1
  legacy_metrics    with no eval_metric, XGBoost before 1.3 scored classification with `error`/`merror`; later
                    releases use `logloss`/`mlogloss` (the library's default, which needs no setting)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from common.errors import UserError

VERSION_VAR = "SAGEMAKER_EMULATED_VERSION"  # the image tag sets it (docker/Dockerfile, images.yaml versions)


@dataclass(frozen=True)
class Version:
    name: str
    csv_output: str
    pickled_model: bool
    legacy_metrics: bool


VERSIONS = {v.name: v for v in (
    Version("1.0-1", "comma_joined", True, True),
    Version("1.2-1", "comma_joined", True, True),
    Version("1.2-2", "per_line", True, True),
    Version("1.3-1", "per_line", False, False),
    Version("1.5-1", "per_line", False, False),
    Version("1.7-1", "per_line", False, False),
    Version("3.0-5", "per_line", False, False),
)}
LATEST = "3.0-5"
# Before 1.3 XGBoost's default metric for these objectives; every other objective's default did not change.
LEGACY_DEFAULT_METRICS = {"binary:logistic": "error", "binary:logitraw": "error", "binary:hinge": "error",
                          "multi:softmax": "merror", "multi:softprob": "merror"}


def current() -> Version:
    """The emulated version: SAGEMAKER_EMULATED_VERSION, or the newest."""
    name = os.environ.get(VERSION_VAR, "").strip() or LATEST
    if name not in VERSIONS:
        raise UserError(f"{VERSION_VAR}='{name}' is not an emulated version; use one of: {', '.join(VERSIONS)}.")
    return VERSIONS[name]


def default_eval_metric(objective: str) -> str | None:
    """The eval_metric to set when the job gives none, so an old version's log shows its old default metric."""
    return LEGACY_DEFAULT_METRICS.get(objective) if current().legacy_metrics else None
