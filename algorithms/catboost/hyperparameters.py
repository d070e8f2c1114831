"""CatBoost hyperparameters, with the defaults `retrieve_default` sends.

Deviations, all lenient supersets: `l2_leaf_reg` takes any positive number (the guide types it int, but
HPO's continuous ranges send decimals); `random_strength` takes 0 (inside the guide's HPO range 0-10).
`max_leaves` and `min_data_in_leaf` reach CatBoost only with a grow policy that uses them (their
always-sent defaults would make CatBoost refuse a SymmetricTree job). `problem_type` is ours, as for
LightGBM. CatBoost keeps integers as C ints (`random_seed` as an unsigned 64-bit one) and real
parameters as floats, hence the INT32_MAX and FLOAT32_MAX bounds.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from common.constraints import (
    FLOAT32_MAX,
    INT32_MAX,
    INT32_MIN,
    MAX_WEIGHT,
    Choice,
    Constraint,
    Integer,
    Real,
    float32_inside,
    unquote,
)
from common.hyperparameters import Hyperparameters, hp

BINARY, MULTICLASS, REGRESSION = "binary classification", "multiclass classification", "regression"
# The eval metrics CatBoost trains with, per task (the loss is Logloss, MultiClass or RMSE).
METRICS = {
    BINARY: ("AUC", "Accuracy", "BalancedAccuracy", "BalancedErrorRate", "BrierScore", "CrossEntropy", "F", "F1",
             "Focal", "HammingLoss", "HingeLoss", "Kappa", "LogLikelihoodOfPrediction", "Logloss", "MCC",
             "NormalizedGini", "PRAUC", "Precision", "Recall", "TotalF1", "WKappa", "ZeroOneLoss"),
    MULTICLASS: ("AUC", "Accuracy", "HammingLoss", "HingeLoss", "Kappa", "MCC", "MultiClass", "TotalF1", "WKappa",
                 "ZeroOneLoss"),
    REGRESSION: ("Cox", "Expectile", "FairLoss", "Huber", "LogCosh", "LogLinQuantile", "Lq", "MAE", "MAPE", "MSLE",
                 "MedianAbsoluteError", "MultiQuantile", "NormalizedGini", "NumErrors", "Poisson", "Quantile", "R2",
                 "RMSE", "RMSPE", "SMAPE", "Tweedie"),
}
MIN_LEARNING_RATE = 2**-23  # CatBoost refuses a learning rate at or below float32's epsilon
AUTO_METRIC = {BINARY: "AUC", MULTICLASS: "MultiClass", REGRESSION: "RMSE"}
REQUIRED_PARAMS = {"F": ("beta",), "Focal": ("focal_alpha", "focal_gamma"), "Huber": ("delta",), "Lq": ("q",),
                   "NumErrors": ("greater_than",), "Tweedie": ("variance_power",)}
_PARAMS = re.compile(r"^\w+=[^;=]+(;\w+=[^;=]+)*$")


def metric_name(metric: str) -> str:
    """`Quantile:alpha=0.9` -> `Quantile`."""
    return metric.split(":", 1)[0]


def metric_problem(metric: str, tasks: tuple[str, ...]) -> str | None:
    """None when `metric` (not auto) is a metric of one of `tasks`; else the sentence saying what is allowed."""
    if metric_name(metric) in {m for task in tasks for m in METRICS[task]}:
        return None
    return (f"Hyperparameter 'eval_metric' has value '{metric}', which {' or '.join(tasks)} training does not "
            "support; use 'auto' or one of: " + ", ".join(sorted({m for t in tasks for m in METRICS[t]})))


class EvalMetric(Constraint):
    """`auto`/`Auto`, or a CatBoost metric name with optional parameters (`Quantile:alpha=0.9`)."""

    def parse(self, text: str) -> str:
        value = unquote(text).strip()
        if value in ("auto", "Auto"):
            return "auto"
        name, colon, params = value.partition(":")
        if metric_problem(name, tuple(METRICS)) is not None or (colon and not _PARAMS.match(params)):
            raise ValueError
        given = {item.split("=", 1)[0] for item in params.split(";")} if params else set()
        if not set(REQUIRED_PARAMS.get(name, ())) <= given:
            raise ValueError
        return value

    def describe(self) -> str:
        names = ", ".join(sorted({m for task in METRICS.values() for m in task}))
        needs = ", ".join(f"{m} {' and '.join(p)}" for m, p in REQUIRED_PARAMS.items())
        return (f"'auto' or one of {names}, optionally with parameters as Name:key=value;key=value "
                f"(required parameters: {needs})")

    def invalid_examples(self) -> list[str]:
        return ["", "Nope", "rmse", "AUTO", "Huber", "Quantile:alpha", "RMSE:"]


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
    """-1 or a positive integer; values above MAX_THREADS are lowered when the parameters are built."""

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
    iterations: int = hp(Integer(1, INT32_MAX), 500, "maximum number of trees")
    early_stopping_rounds: int = hp(Integer(INT32_MIN, INT32_MAX), 5,
                                    "stop after this many rounds without improvement; <= 0 disables")
    eval_metric: str = hp(EvalMetric(), "auto", "auto (or Auto): RMSE, AUC or MultiClass by task")
    learning_rate: float = hp(Real(MIN_LEARNING_RATE, 1, low_open=True, high_open=True), 0.009)
    depth: int = hp(Integer(1, 16), 6)
    l2_leaf_reg: float = hp(Real(0, FLOAT32_MAX, low_open=True), 3.0)
    random_strength: float = hp(Real(0, FLOAT32_MAX), 1.0)
    max_leaves: int = hp(Integer(2, 64), 31, "only with grow_policy=Lossguide")
    rsm: float = hp(Real(0, 1, low_open=True), 1.0)
    sampling_frequency: str = hp(Choice("PerTreeLevel", "PerTree"), "PerTreeLevel")
    min_data_in_leaf: int = hp(Integer(1, INT32_MAX), 1, "only with grow_policy Lossguide or Depthwise")
    bagging_temperature: float = hp(Real(0, FLOAT32_MAX), 1.0)
    boosting_type: str = hp(Choice("Auto", "Ordered", "Plain"), "Auto")
    scale_pos_weight: float = hp(Real(0, MAX_WEIGHT, low_open=True), 1.0, "binary classification only")
    max_bin: int | str = hp(AutoOrInteger(1, 65535), "Auto", "border_count")
    grow_policy: str = hp(Choice("SymmetricTree", "Depthwise", "Lossguide"), "SymmetricTree")
    random_seed: int = hp(Integer(0, 2**64 - 1), 1)
    thread_count: int = hp(ThreadCount(), -1)
    verbose: int = hp(Integer(1, INT32_MAX), 1, "print every N iterations")
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

    def as_float32(self) -> CatBoostHyperparameters:
        """The values CatBoost will hold (it keeps real parameters as float32)."""
        return dataclasses.replace(self, **{f.name: float32_inside(getattr(self, f.name), f.metadata["constraint"])
                                            for f in dataclasses.fields(self)})

    def check(self) -> list[str]:
        tasks = {"classification": (BINARY, MULTICLASS), "regression": (REGRESSION,)}.get(self.problem_type)
        problem = metric_problem(self.eval_metric, tasks) if tasks and self.eval_metric != "auto" else None
        return [problem] if problem else []
