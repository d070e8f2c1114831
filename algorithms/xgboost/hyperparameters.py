"""XGBoost algorithm-mode hyperparameters.

Library parameters default to None, meaning "not sent: XGBoost's own default" (the container injects
no defaults); the documented default is in each field's doc. `params()` is what reaches XGBoost.
XGBoost reads integer parameters as C ints and most real ones as floats, hence the INT32_MAX and
FLOAT32_MAX bounds; `num_round` only counts rounds in Python and stays unbounded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, ClassVar

from algorithms.xgboost.constraints import EvalMetrics, IntTuple, NestedIntLists, Updaters
from algorithms.xgboost.metric_catalog import CONTAINER_METRICS
from common.constraints import FLOAT32_MAX, INT32_MAX, MAX_THREADS, MAX_WEIGHT, Choice, Integer, Real, float32_inside
from common.hyperparameters import Hyperparameters, hp

log = logging.getLogger(__name__)

OBJECTIVES = (
    "aft_loss_distribution", "binary:logistic", "binary:logitraw", "binary:hinge", "count:poisson",
    "multi:softmax", "multi:softprob", "rank:pairwise", "rank:ndcg", "rank:map", "reg:linear",
    "reg:squarederror", "reg:logistic", "reg:gamma", "reg:pseudohubererror", "reg:squaredlogerror",
    "reg:absoluteerror", "reg:tweedie", "survival:aft", "survival:cox",
)
TRUE_FALSE = Choice("true", "false")
UNIT = Real(0, 1)
UNIT_OPEN_LOW = Real(0, 1, low_open=True)
NON_NEGATIVE = Real(0, FLOAT32_MAX)
LOGISTIC = ("binary:logistic", "reg:logistic")  # base_score is a probability for these
MULTICLASS_METRICS = ("merror", "mlogloss")
SURVIVAL_METRICS = ("aft-nloglik", "interval-regression-accuracy")
# Consumed by the container, never sent to XGBoost.
CONTAINER_ONLY = frozenset({"num_round", "early_stopping_rounds", "csv_weights", "save_model_on_termination",
                            "use_dask_gpu_training"})
# Accepted for compatibility; XGBoost 3 dropped them, so they are not sent (it would warn "not used").
OBSOLETE = frozenset({"deterministic_histogram", "single_precision_histogram", "lambda_bias", "dsplit",
                      "predictor", "prob_buffer_row"})
TREE_BUILDERS = frozenset({"grow_colmaker", "grow_histmaker", "grow_quantile_histmaker"})
LINEAR_UPDATERS = frozenset({"shotgun", "coord_descent"})
# XGBoost names reg:tweedie's default metric tweedie-nloglik@<power> with 6 digits, and refuses the "2"
# that powers from 1.999995 print as.
TWEEDIE_POWER_MAX = 1.99999
# Bytes per (row, class) of predictions, gradients and margins that XGBoost keeps during training.
BYTES_PER_ROW_CLASS = 32


def _p(constraint: Any, doc: str) -> Any:
    return hp(constraint, None, doc)


@dataclass(frozen=True)
class XGBoostHyperparameters(Hyperparameters):
    num_round: int = hp(Integer(1), doc="boosting rounds")
    num_class: int | None = _p(Integer(2, INT32_MAX), "classes; required for multi:softmax and multi:softprob")
    alpha: float | None = _p(NON_NEGATIVE, "L1 regularisation (alias reg_alpha); default 0")
    base_score: float | None = _p(NON_NEGATIVE, "initial prediction; XGBoost 3 estimates it when unset; "
                                                "in (0, 1) for binary:logistic and reg:logistic")
    booster: str | None = _p(Choice("gbtree", "gblinear", "dart"), "default gbtree")
    colsample_bylevel: float | None = _p(UNIT_OPEN_LOW, "default 1")
    colsample_bynode: float | None = _p(UNIT_OPEN_LOW, "default 1")
    colsample_bytree: float | None = _p(UNIT_OPEN_LOW, "default 1")
    csv_weights: int = hp(Integer(0, 1), 0, "1: CSV column 2 is the instance weight (label, weight, features)")
    deterministic_histogram: str | None = _p(TRUE_FALSE, "GPU only; no effect in XGBoost 3")
    early_stopping_rounds: int | None = _p(Integer(1, INT32_MAX), "stop after this many rounds without validation gain")
    eta: float | None = _p(UNIT, "learning rate (alias learning_rate); default 0.3")
    eval_metric: tuple[str, ...] | None = _p(EvalMetrics(), "comma-separated metrics; default by objective")
    gamma: float | None = _p(NON_NEGATIVE, "minimum split loss (alias min_split_loss); default 0")
    grow_policy: str | None = _p(Choice("depthwise", "lossguide"), "default depthwise")
    interaction_constraints: tuple[tuple[int, ...], ...] | None = _p(NestedIntLists(), "e.g. [[1,2],[3,4,5]]")
    reg_lambda: float | None = _p(NON_NEGATIVE, "L2 regularisation, sent as 'lambda' (alias of lambda); default 1")
    lambda_bias: float | None = _p(UNIT, "legacy gblinear bias L2; no effect in XGBoost 3")
    max_bin: int | None = _p(Integer(2, INT32_MAX), "default 256")
    max_delta_step: float | None = _p(NON_NEGATIVE, "default 0")
    max_depth: int | None = _p(Integer(0, INT32_MAX), "default 6; 0 = no limit")
    max_leaves: int | None = _p(Integer(0, INT32_MAX), "default 0")
    min_child_weight: float | None = _p(NON_NEGATIVE, "default 1")
    monotone_constraints: tuple[int, ...] | None = _p(IntTuple(), "e.g. (0,1,-1)")
    normalize_type: str | None = _p(Choice("tree", "forest"), "dart; default tree")
    nthread: int | None = _p(Integer(1, MAX_THREADS), "default all cores")
    objective: str | None = _p(Choice(*OBJECTIVES), "default reg:squarederror")
    one_drop: int | None = _p(Integer(0, 1), "dart; default 0")
    process_type: str | None = _p(Choice("default", "update"), "default default; update needs an input model")
    rate_drop: float | None = _p(UNIT, "dart; default 0")
    refresh_leaf: int | None = _p(Integer(0, 1), "default 1")
    sample_type: str | None = _p(Choice("uniform", "weighted"), "dart; default uniform")
    scale_pos_weight: float | None = _p(Real(0, MAX_WEIGHT, low_open=True), "default 1")
    seed: int | None = _p(Integer(-2**31, 2**31 - 1, low_open=True, high_open=True), "default 0")
    single_precision_histogram: str | None = _p(TRUE_FALSE, "GPU only; no effect in XGBoost 3")
    sketch_eps: float | None = _p(Real(0, 1, low_open=True, high_open=True), "approx; default 0.03")
    skip_drop: float | None = _p(UNIT, "dart; default 0")
    subsample: float | None = _p(UNIT_OPEN_LOW, "default 1")
    tree_method: str | None = _p(Choice("auto", "exact", "approx", "hist", "gpu_hist"), "default auto (= hist)")
    tweedie_variance_power: float | None = _p(Real(1, 2, low_open=True, high_open=True), "default 1.5")
    updater: tuple[str, ...] | None = _p(Updaters(), "comma-separated; advanced")
    use_dask_gpu_training: str | None = _p(TRUE_FALSE, "multi-GPU Dask training; not in this CPU image")
    verbosity: int | None = _p(Integer(0, 3), "default 1")
    dsplit: str | None = _p(Choice("row", "col"), "obsolete; no effect")
    predictor: str | None = _p(Choice("auto", "cpu_predictor", "gpu_predictor"), "obsolete; no effect")
    num_parallel_tree: int | None = _p(Integer(1, INT32_MAX), "trees per round (random forests); default 1")
    save_model_on_termination: str | None = _p(TRUE_FALSE, "write xgboost-model after every round")
    aft_loss_distribution: str | None = _p(Choice("normal", "logistic", "extreme"), "survival:aft")
    aft_loss_distribution_scale: float | None = _p(NON_NEGATIVE, "survival:aft")
    sampling_method: str | None = _p(Choice("uniform", "gradient_based"), "default uniform")
    prob_buffer_row: int | None = _p(Integer(2, INT32_MAX), "obsolete; no effect")

    aliases: ClassVar[dict[str, str]] = {"learning_rate": "eta", "min_split_loss": "gamma", "lambda": "reg_lambda",
                                         "reg_alpha": "alpha"}
    deprecated: ClassVar[dict[str, str]] = {
        "silent": "it belongs to the 0.72 algorithm; use verbosity (0 silent .. 3 debug) instead"}
    hints: ClassVar[dict[str, str]] = {"num_boost_round": "num_round", "n_estimators": "num_round",
                                       "num_classes": "num_class", "metric": "eval_metric"}

    @property
    def objective_name(self) -> str:
        return self.objective or "reg:squarederror"

    def check(self) -> list[str]:
        problems = []
        objective = self.objective_name
        if objective.startswith("multi:") and self.num_class is None:
            problems.append(f"Hyperparameter 'num_class' is required when objective is '{objective}'")
        if objective == "aft_loss_distribution":
            problems.append("objective 'aft_loss_distribution' is a hyperparameter, not an objective: use "
                            "objective=survival:aft with aft_loss_distribution=normal, logistic or extreme")
        if objective == "survival:aft":
            problems.append("objective 'survival:aft' needs a lower and an upper label bound per row, which "
                            "algorithm-mode data cannot carry; use survival:cox, or script mode")
        problems.extend(self._check_base_score(objective))
        problems.extend(_check_metrics(self.eval_metric or (), objective))
        if self.monotone_constraints is not None and self.tree_method not in (None, "auto", "exact", "hist"):
            problems.append(f"monotone_constraints need tree_method exact or hist, not '{self.tree_method}'")
        if self.interaction_constraints is not None and self.tree_method not in (None, "auto", "exact", "hist",
                                                                                 "approx"):
            problems.append(f"interaction_constraints need tree_method exact, hist or approx, not "
                            f"'{self.tree_method}'")
        if self.use_dask_gpu_training == "true":
            problems.append("use_dask_gpu_training=true needs GPUs and Dask, which this CPU image does not have; "
                            "leave it unset or false")
        if self.process_type == "update":
            problems.append("Hyperparameter 'process_type' has value 'update', which only modifies the trees of an "
                            "existing model, and algorithm-mode training starts from none; use 'default'")
        problems.extend(self._check_updater())
        return problems

    def _check_base_score(self, objective: str) -> list[str]:
        score = self.base_score
        if score is None:
            return []
        if objective in LOGISTIC and not 0 < score < 1:
            return [f"Hyperparameter 'base_score' has invalid value '{score}': objective '{objective}' needs a "
                    "probability in the range (0, 1)"]
        if objective == "reg:gamma" and score <= 0:
            return [f"Hyperparameter 'base_score' has invalid value '{score}': objective 'reg:gamma' needs a "
                    "number greater than 0"]
        return []

    def _check_updater(self) -> list[str]:
        if not self.updater:
            return []
        chosen, given = set(self.updater), ",".join(self.updater)
        if self.booster == "gblinear":
            if len(self.updater) != 1 or not chosen <= LINEAR_UPDATERS:
                return ["With booster=gblinear, updater must be exactly one of shotgun, coord_descent. "
                        f"Hyperparameter 'updater' is '{given}'"]
        elif chosen & LINEAR_UPDATERS:
            return [f"Hyperparameter 'updater' has invalid value '{given}': shotgun and coord_descent need "
                    f"booster=gblinear, not '{self.booster or 'gbtree'}'"]
        elif len(chosen & TREE_BUILDERS) > 1:
            return ["updater may contain at most one tree-building updater (" + ", ".join(sorted(TREE_BUILDERS))
                    + f"); got '{given}'"]
        elif self.updater[0] in ("refresh", "prune"):
            return [f"Hyperparameter 'updater' has invalid value '{given}': it must start with a tree-building "
                    "updater (" + ", ".join(sorted(TREE_BUILDERS)) + " or sync); refresh and prune only "
                    "modify trees"]
        return []

    def check_data(self, num_features: int, rows: int) -> list[str]:
        """Rules that need the training data's width and row count (known at train time)."""
        problems = []
        monotone = self.monotone_constraints
        if monotone is not None and len(monotone) > num_features:
            problems.append(f"Hyperparameter 'monotone_constraints' has invalid value "
                            f"'{_wire('monotone_constraints', monotone)}': it has {len(monotone)} entries but the "
                            f"data has {num_features} features; give at most one entry per feature")
        groups = self.interaction_constraints or ()
        if any(i >= num_features for group in groups for i in group):
            problems.append(f"Hyperparameter 'interaction_constraints' has invalid value "
                            f"'{_wire('interaction_constraints', groups)}': feature indices must be 0 to "
                            f"{num_features - 1} for data with {num_features} features")
        classes = self.num_class if self.objective_name.startswith("multi:") and self.num_class else 1
        needed, physical = BYTES_PER_ROW_CLASS * rows * classes, _physical_memory()
        if needed > physical:
            problems.append(f"Hyperparameter 'num_class' has value '{classes}', which needs about "
                            f"{needed / 2**30:.1f} GiB for {rows} rows, more than this machine's "
                            f"{physical / 2**30:.1f} GiB; give the number of classes in the labels")
        return problems

    def params(self) -> dict[str, Any]:
        """The parameters XGBoost receives: only those given, in XGBoost's spelling."""
        params: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None or field.name in CONTAINER_ONLY | OBSOLETE or field.name == "eval_metric":
                continue
            value = float32_inside(value, field.metadata["constraint"])
            if field.name == "tweedie_variance_power":
                value = min(value, TWEEDIE_POWER_MAX)
            params["lambda" if field.name == "reg_lambda" else field.name] = _wire(field.name, value)
        for name in sorted(OBSOLETE):
            if getattr(self, name) is not None:
                log.warning("Hyperparameter '%s' has no effect in XGBoost 3 and is not passed on.", name)
        if params.get("tree_method") == "gpu_hist":
            log.warning("tree_method=gpu_hist needs a GPU; this CPU image trains with tree_method=hist.")
            params["tree_method"] = "hist"
        if params.get("objective") == "reg:linear":
            log.warning("objective reg:linear is deprecated; it means reg:squarederror.")
            params["objective"] = "reg:squarederror"
        return params


def _check_metrics(metrics: tuple[str, ...], objective: str) -> list[str]:
    problems = []
    multiclass = objective.startswith("multi:")
    for metric in metrics:
        name = metric.split("@", 1)[0]
        if metric == "auc" and not objective.startswith(("binary:", "rank:")):
            problems.append(f"eval_metric 'auc' needs a binary: or rank: objective, not '{objective}'")
        elif name in SURVIVAL_METRICS and objective != "survival:aft":
            problems.append(f"eval_metric '{metric}' needs objective survival:aft, not '{objective}'")
        elif name in MULTICLASS_METRICS and not multiclass:
            problems.append(f"eval_metric '{metric}' needs a multi: objective, not '{objective}'")
        elif multiclass and name not in MULTICLASS_METRICS + CONTAINER_METRICS:
            problems.append(f"eval_metric '{metric}' does not apply to objective '{objective}' (one prediction "
                            "per class); use merror, mlogloss or a container metric such as accuracy")
        elif metric == "tweedie-nloglik":
            problems.append("eval_metric 'tweedie-nloglik' needs the variance power as tweedie-nloglik@rho "
                            "(1 < rho < 2), e.g. tweedie-nloglik@1.5")
    return problems


def _physical_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _wire(name: str, value: Any) -> Any:
    if name == "monotone_constraints":
        return "(" + ",".join(map(str, value)) + ")"
    if name == "interaction_constraints":
        return "[" + ",".join("[" + ",".join(map(str, group)) + "]" for group in value) + "]"
    if name == "updater":
        return ",".join(value)
    return value
