"""LightGBM hyperparameters: the developer guide's defaults, which `retrieve_default` sends.

Ranges are the guide's, except `feature_fraction` which also takes 1.0 (the guide's HPO range goes to
1.0, and 1.0 means no subsampling), and integers end at the C int range LightGBM reads them in (it
wraps larger ones silently). `num_threads` stops at MAX_THREADS: OpenMP allocates per requested
thread. `problem_type` is ours: `auto` infers the task from the labels as the guide describes;
`classification`/`regression` pin the JumpStart model id's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from common.constraints import INT32_MAX, INT32_MIN, MAX_THREADS, Boolean, Choice, Integer, Real
from common.hyperparameters import Hyperparameters, hp

REGRESSION_METRICS = ("rmse", "l1", "l2", "huber", "fair")
BINARY_METRICS = ("binary_logloss", "binary_error", "auc", "average_precision", "cross_entropy")
MULTICLASS_METRICS = ("multi_logloss", "multi_error", "auc_mu")
METRICS = ("auto", *REGRESSION_METRICS, *BINARY_METRICS, *MULTICLASS_METRICS)
ANY_INT = Integer(INT32_MIN, INT32_MAX)


@dataclass(frozen=True)
class LightGBMHyperparameters(Hyperparameters):
    num_boost_round: int = hp(Integer(1, INT32_MAX), 100, "boosting rounds (multiclass: trees per class)")
    early_stopping_rounds: int = hp(ANY_INT, 10, "stop after this many rounds without improvement; <= 0 disables")
    metric: str = hp(Choice(*METRICS), "auto", "auto: rmse, binary_logloss or multi_logloss by task")
    learning_rate: float = hp(Real(0, 1, low_open=True, high_open=True), 0.1)
    num_leaves: int = hp(Integer(2, 131071), 64)
    feature_fraction: float = hp(Real(0, 1, low_open=True), 0.9)
    bagging_fraction: float = hp(Real(0, 1, low_open=True), 0.9)
    bagging_freq: int = hp(Integer(0, INT32_MAX), 1, "0 disables bagging")
    max_depth: int = hp(ANY_INT, 6, "<= 0 means no limit")
    min_data_in_leaf: int = hp(Integer(0, INT32_MAX), 3)
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
    max_bin: int = hp(Integer(2, INT32_MAX), 255)
    tweedie_variance_power: float = hp(Real(1, 2, high_open=True), 1.5, "regression only")
    num_threads: int = hp(Integer(0, MAX_THREADS), 0, "0: OpenMP's default")
    verbosity: int = hp(ANY_INT, 1, "<0 fatal, 0 warnings, 1 info, >1 debug")
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
        problems = []
        if self.is_unbalance and self.scale_pos_weight != 1.0:
            problems.append(f"Hyperparameters 'is_unbalance' and 'scale_pos_weight' cannot be used together "
                            f"(is_unbalance=True, scale_pos_weight={self.scale_pos_weight}); set only one of them")
        if self.boosting == "rf" and not (0 < self.bagging_freq and self.bagging_fraction < 1
                                          or self.feature_fraction < 1):
            problems.append(f"Hyperparameter 'boosting' has value 'rf', which needs bagging (bagging_freq > 0 and "
                            f"bagging_fraction < 1) or feature_fraction < 1; got bagging_freq={self.bagging_freq}, "
                            f"bagging_fraction={self.bagging_fraction}, feature_fraction={self.feature_fraction}")
        allowed = {"regression": REGRESSION_METRICS, "classification": BINARY_METRICS + MULTICLASS_METRICS}
        if self.metric != "auto" and self.problem_type in allowed and self.metric not in allowed[self.problem_type]:
            problems.append(f"Hyperparameter 'metric' has value '{self.metric}', which does not apply to "
                            f"problem_type '{self.problem_type}'; use one of: "
                            + ", ".join(("auto", *allowed[self.problem_type])))
        return problems
