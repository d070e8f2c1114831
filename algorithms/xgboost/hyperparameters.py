"""XGBoost algorithm-mode hyperparameters (spec xgboost.md §2).

Library parameters default to None, meaning "not sent: XGBoost's own default" (the container injects
no defaults); the documented default is in each field's doc. `params()` is what reaches XGBoost.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from algorithms.xgboost.constraints import EvalMetrics, IntTuple, NestedIntLists, Updaters
from common.constraints import Choice, Integer, Real
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
# Consumed by the container, never sent to XGBoost.
CONTAINER_ONLY = frozenset({"num_round", "early_stopping_rounds", "csv_weights", "save_model_on_termination",
                            "use_dask_gpu_training"})
# Accepted for compatibility; XGBoost 3 dropped them, so they are not sent (it would warn "not used").
OBSOLETE = frozenset({"deterministic_histogram", "single_precision_histogram", "lambda_bias", "dsplit",
                      "predictor", "prob_buffer_row"})
TREE_BUILDERS = frozenset({"grow_colmaker", "distcol", "grow_histmaker", "grow_skmaker", "grow_quantile_histmaker"})


def _p(constraint: Any, doc: str) -> Any:
    return hp(constraint, None, doc)


@dataclass(frozen=True)
class XGBoostHyperparameters(Hyperparameters):
    num_round: int = hp(Integer(1), doc="boosting rounds")
    num_class: int | None = _p(Integer(2), "classes; required for multi:softmax and multi:softprob")
    alpha: float | None = _p(Real(0), "L1 regularisation (alias reg_alpha); default 0")
    base_score: float | None = _p(Real(0), "initial prediction; XGBoost 3 estimates it when unset")
    booster: str | None = _p(Choice("gbtree", "gblinear", "dart"), "default gbtree")
    colsample_bylevel: float | None = _p(UNIT_OPEN_LOW, "default 1")
    colsample_bynode: float | None = _p(UNIT_OPEN_LOW, "default 1")
    colsample_bytree: float | None = _p(UNIT_OPEN_LOW, "default 1")
    csv_weights: int = hp(Integer(0, 1), 0, "1: CSV column 2 is the instance weight (label, weight, features)")
    deterministic_histogram: str | None = _p(TRUE_FALSE, "GPU only; no effect in XGBoost 3")
    early_stopping_rounds: int | None = _p(Integer(1), "stop after this many rounds without validation gain")
    eta: float | None = _p(UNIT, "learning rate (alias learning_rate); default 0.3")
    eval_metric: tuple[str, ...] | None = _p(EvalMetrics(), "comma-separated metrics; default by objective")
    gamma: float | None = _p(Real(0), "minimum split loss (alias min_split_loss); default 0")
    grow_policy: str | None = _p(Choice("depthwise", "lossguide"), "default depthwise")
    interaction_constraints: tuple[tuple[int, ...], ...] | None = _p(NestedIntLists(), "e.g. [[1,2],[3,4,5]]")
    reg_lambda: float | None = _p(Real(0), "L2 regularisation, sent as 'lambda' (alias of lambda); default 1")
    lambda_bias: float | None = _p(UNIT, "legacy gblinear bias L2; no effect in XGBoost 3")
    max_bin: int | None = _p(Integer(0), "default 256")
    max_delta_step: float | None = _p(Real(0), "default 0")
    max_depth: int | None = _p(Integer(0), "default 6; 0 = no limit")
    max_leaves: int | None = _p(Integer(0), "default 0")
    min_child_weight: float | None = _p(Real(0), "default 1")
    monotone_constraints: tuple[int, ...] | None = _p(IntTuple(), "e.g. (0,1,-1)")
    normalize_type: str | None = _p(Choice("tree", "forest"), "dart; default tree")
    nthread: int | None = _p(Integer(1), "default all cores")
    objective: str | None = _p(Choice(*OBJECTIVES), "default reg:squarederror")
    one_drop: int | None = _p(Integer(0, 1), "dart; default 0")
    process_type: str | None = _p(Choice("default", "update"), "default default")
    rate_drop: float | None = _p(UNIT, "dart; default 0")
    refresh_leaf: int | None = _p(Integer(0, 1), "default 1")
    sample_type: str | None = _p(Choice("uniform", "weighted"), "dart; default uniform")
    scale_pos_weight: float | None = _p(Real(0, low_open=True), "default 1")
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
    num_parallel_tree: int | None = _p(Integer(1), "trees per round (random forests); default 1")
    save_model_on_termination: str | None = _p(TRUE_FALSE, "write xgboost-model after every round")
    aft_loss_distribution: str | None = _p(Choice("normal", "logistic", "extreme"), "survival:aft")
    aft_loss_distribution_scale: float | None = _p(Real(0), "survival:aft")
    sampling_method: str | None = _p(Choice("uniform", "gradient_based"), "default uniform")
    prob_buffer_row: int | None = _p(Integer(2), "obsolete; no effect")

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
        for metric in self.eval_metric or ():
            if metric == "auc" and not objective.startswith(("binary:", "rank:")):
                problems.append(f"eval_metric 'auc' needs a binary: or rank: objective, not '{objective}'")
            if metric == "aft-nloglik" and objective != "survival:aft":
                problems.append(f"eval_metric 'aft-nloglik' needs objective survival:aft, not '{objective}'")
        if self.monotone_constraints is not None and self.tree_method not in (None, "auto", "exact", "hist"):
            problems.append(f"monotone_constraints need tree_method exact or hist, not '{self.tree_method}'")
        if self.interaction_constraints is not None and self.tree_method not in (None, "auto", "exact", "hist",
                                                                                 "approx"):
            problems.append(f"interaction_constraints need tree_method exact, hist or approx, not "
                            f"'{self.tree_method}'")
        if self.use_dask_gpu_training == "true":
            problems.append("use_dask_gpu_training=true needs GPUs and Dask, which this CPU image does not have; "
                            "leave it unset or false")
        problems.extend(self._check_updater())
        return problems

    def _check_updater(self) -> list[str]:
        if not self.updater:
            return []
        chosen = set(self.updater)
        if self.booster == "gblinear":
            if len(self.updater) != 1 or not chosen <= {"shotgun", "coord_descent"}:
                return ["With booster=gblinear, updater must be exactly one of shotgun, coord_descent"]
        elif self.process_type == "update":
            if not chosen <= {"refresh", "prune"}:
                return ["With process_type=update, updater may only contain refresh and prune"]
        elif len(chosen & TREE_BUILDERS) > 1:
            return ["updater may contain at most one tree-building updater (" + ", ".join(sorted(TREE_BUILDERS))
                    + ")"]
        return []

    def params(self) -> dict[str, Any]:
        """The parameters XGBoost receives: only those given, in XGBoost's spelling."""
        params: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None or field.name in CONTAINER_ONLY | OBSOLETE or field.name == "eval_metric":
                continue
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


def _wire(name: str, value: Any) -> Any:
    if name == "monotone_constraints":
        return "(" + ",".join(map(str, value)) + ")"
    if name == "interaction_constraints":
        return "[" + ",".join("[" + ",".join(map(str, group)) + "]" for group in value) + "]"
    if name == "updater":
        return ",".join(value)
    return value
