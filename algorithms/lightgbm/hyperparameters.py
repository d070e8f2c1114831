"""LightGBM hyperparameters (spec lightgbm.md §2): the guide's defaults, which `retrieve_default` sends.

Ranges are the guide's, except `feature_fraction` which also takes 1.0 (the guide's HPO range goes to
1.0, and 1.0 means no subsampling). `problem_type` is ours: `auto` infers the task from the labels
as the guide describes; `classification`/`regression` pin the JumpStart model id's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from common.constraints import Boolean, Choice, Integer, Real
from common.hyperparameters import Hyperparameters, hp

REGRESSION_METRICS = ("rmse", "l1", "l2", "huber", "fair")
BINARY_METRICS = ("binary_logloss", "binary_error", "auc", "average_precision", "cross_entropy")
MULTICLASS_METRICS = ("multi_logloss", "multi_error", "auc_mu")
METRICS = ("auto", *REGRESSION_METRICS, *BINARY_METRICS, *MULTICLASS_METRICS)


@dataclass(frozen=True)
class LightGBMHyperparameters(Hyperparameters):
    num_boost_round: int = hp(Integer(1), 100, "boosting rounds (multiclass: trees per class)")
    early_stopping_rounds: int = hp(Integer(), 10, "stop after this many rounds without improvement; <= 0 disables")
    metric: str = hp(Choice(*METRICS), "auto", "auto: rmse, binary_logloss or multi_logloss by task")
    learning_rate: float = hp(Real(0, 1, low_open=True, high_open=True), 0.1)
    num_leaves: int = hp(Integer(2, 131071), 64)
    feature_fraction: float = hp(Real(0, 1, low_open=True), 0.9)
    bagging_fraction: float = hp(Real(0, 1, low_open=True), 0.9)
    bagging_freq: int = hp(Integer(0), 1, "0 disables bagging")
    max_depth: int = hp(Integer(), 6, "<= 0 means no limit")
    min_data_in_leaf: int = hp(Integer(0), 3)
    max_delta_step: float = hp(Real(), 0.0, "<= 0 means no constraint")
    lambda_l1: float = hp(Real(0), 0.0)
    lambda_l2: float = hp(Real(0), 0.0)
    boosting: str = hp(Choice("gbdt", "rf", "dart", "goss"), "gbdt")
    min_gain_to_split: float = hp(Real(0), 0.0)
    scale_pos_weight: float = hp(Real(0, low_open=True), 1.0, "binary classification only")
    tree_learner: str = hp(Choice("serial", "feature", "data", "voting"), "serial",
                           "several hosts: serial becomes data")
    feature_fraction_bynode: float = hp(Real(0, 1, low_open=True), 1.0)
    is_unbalance: bool = hp(Boolean(), False, "binary classification only")
    max_bin: int = hp(Integer(2), 255)
    tweedie_variance_power: float = hp(Real(1, 2, high_open=True), 1.5, "regression only")
    num_threads: int = hp(Integer(0), 0, "0: OpenMP's default")
    verbosity: int = hp(Integer(), 1, "<0 fatal, 0 warnings, 1 info, >1 debug")
    use_dask: bool = hp(Boolean(), False, "accepted for compatibility; several hosts use LightGBM's own network")
    problem_type: str = hp(Choice("auto", "classification", "regression"), "auto",
                           "auto: classification when labels are the integers 0..K-1 (2 <= K <= 100)")

    hints: ClassVar[dict[str, str]] = {
        "n_estimators": "num_boost_round",
        "num_iterations": "num_boost_round",
        "eta": "learning_rate",
        "objective": "problem_type",
        "lambda": "lambda_l2",
        "reg_alpha": "lambda_l1",
        "reg_lambda": "lambda_l2",
        "subsample": "bagging_fraction",
        "colsample_bytree": "feature_fraction",
        "min_child_samples": "min_data_in_leaf",
    }

    def check(self) -> list[str]:
        if self.is_unbalance and self.scale_pos_weight != 1.0:
            return ["Hyperparameters 'is_unbalance' and 'scale_pos_weight' cannot be used together; "
                    "set only one of them"]
        return []
