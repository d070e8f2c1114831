"""CatBoost hyperparameters (spec catboost.md §2), with the defaults `retrieve_default` sends.

Deviations, all lenient supersets: `l2_leaf_reg` takes any positive number (the guide types it int, but
HPO's continuous ranges send decimals); `random_strength` takes 0 (inside the guide's HPO range 0-10).
`max_leaves` and `min_data_in_leaf` reach CatBoost only with a grow policy that uses them (their
always-sent defaults would make CatBoost refuse a SymmetricTree job). `problem_type` is ours, as for
LightGBM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from common.constraints import Choice, Constraint, Integer, Real, Text, unquote
from common.hyperparameters import Hyperparameters, hp


class AutoOrInteger(Constraint):
    """The word `Auto` (as the guide spells it) or an integer in a range."""

    def __init__(self, low: int, high: int) -> None:
        self.inner = Integer(low, high)

    def parse(self, text: str) -> Any:
        return "Auto" if unquote(text) == "Auto" else self.inner.parse(text)

    def describe(self) -> str:
        return f"'Auto' or {self.inner.describe()}"

    def invalid_examples(self) -> list[str]:
        return ["auto", "abc", "", *self.inner._outside()]


class ThreadCount(Constraint):
    def parse(self, text: str) -> int:
        value = Integer(-1).parse(text)
        if value == 0:
            raise ValueError
        return value

    def describe(self) -> str:
        return "-1 (all cores) or a positive integer"

    def invalid_examples(self) -> list[str]:
        return ["0", "-2", "abc", ""]


@dataclass(frozen=True)
class CatBoostHyperparameters(Hyperparameters):
    iterations: int = hp(Integer(1), 500, "maximum number of trees")
    early_stopping_rounds: int = hp(Integer(), 5, "stop after this many rounds without improvement; <= 0 disables")
    eval_metric: str = hp(Text(), "auto", "auto: RMSE, AUC or MultiClass by task; else any CatBoost metric")
    learning_rate: float = hp(Real(0, 1, low_open=True, high_open=True), 0.009)
    depth: int = hp(Integer(1, 16), 6)
    l2_leaf_reg: float = hp(Real(0, low_open=True), 3.0)
    random_strength: float = hp(Real(0), 1.0)
    max_leaves: int = hp(Integer(2, 64), 31, "only with grow_policy=Lossguide")
    rsm: float = hp(Real(0, 1, low_open=True), 1.0)
    sampling_frequency: str = hp(Choice("PerTreeLevel", "PerTree"), "PerTreeLevel")
    min_data_in_leaf: int = hp(Integer(1), 1, "only with grow_policy Lossguide or Depthwise")
    bagging_temperature: float = hp(Real(0), 1.0)
    boosting_type: str = hp(Choice("Auto", "Ordered", "Plain"), "Auto")
    scale_pos_weight: float = hp(Real(0, low_open=True), 1.0, "binary classification only")
    max_bin: int | str = hp(AutoOrInteger(1, 65535), "Auto", "border_count")
    grow_policy: str = hp(Choice("SymmetricTree", "Depthwise", "Lossguide"), "SymmetricTree")
    random_seed: int = hp(Integer(0), 1)
    thread_count: int = hp(ThreadCount(), -1)
    verbose: int = hp(Integer(1), 1, "print every N iterations")
    problem_type: str = hp(Choice("auto", "classification", "regression"), "auto",
                           "auto: classification when labels are the integers 0..K-1 (2 <= K <= 100)")

    hints: ClassVar[dict[str, str]] = {
        "n_estimators": "iterations",
        "num_boost_round": "iterations",
        "num_trees": "iterations",
        "max_depth": "depth",
        "eta": "learning_rate",
        "reg_lambda": "l2_leaf_reg",
        "border_count": "max_bin",
        "loss_function": "problem_type",
        "objective": "problem_type",
        "metric": "eval_metric",
        "colsample_bylevel": "rsm",
    }
