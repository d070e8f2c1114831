"""Every field of every schema at its boundaries, generated from the constraints.

Just outside a field's range: `parse_hyperparameters` refuses it, naming the field and the value. The
accepted extremes (each end of a range, each choice): one tiny job each through `run_training`, one
field varied from a small default set at a time, which must end with exit code 0, or 1 with a
ClientError naming the field (a value that does not fit the data or the other fields), never 2.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from algorithms.catboost.hyperparameters import METRICS as CATBOOST_METRICS
from algorithms.catboost.hyperparameters import REGRESSION, AutoOrInteger, EvalMetric, ThreadCount
from algorithms.knn.hyperparameters import IntegerIn
from algorithms.lightgbm.hyperparameters import MULTICLASS_METRICS, REGRESSION_METRICS
from algorithms.xgboost.constraints import UPDATERS, EvalMetrics, IntTuple, NestedIntLists, Updaters
from algorithms.xgboost.metric_catalog import ALL_METRICS
from common.constraints import (
    INT32_MAX,
    AutoOr,
    Boolean,
    Choice,
    Constraint,
    Integer,
    ListOf,
    Real,
    Text,
)
from common.data.recordio_writer import encode_dense
from common.errors import UserError
from common.hyperparameters import parse_hyperparameters
from common.paths import Paths
from common.training import run_training
from tests.conftest import algorithm_names
from tools.local import write_job

HUGE = str(10**20)  # stands for the top of an unbounded integer range
COLUMNS = 3
BASE = {  # required fields, and few rounds where a field allows
    "catboost": {"iterations": "3", "verbose": "100"},
    "fm": {"feature_dim": "3", "num_factors": "2", "predictor_type": "regressor", "mini_batch_size": "10"},
    "kmeans": {"k": "2", "feature_dim": "3"},
    "knn": {"feature_dim": "3", "k": "2", "predictor_type": "classifier", "sample_size": "40"},
    "lightgbm": {"num_boost_round": "3"},
    "pca": {"feature_dim": "3", "mini_batch_size": "10", "num_components": "2"},
    "rcf": {"feature_dim": "3"},
    "xgboost": {"num_round": "2"},
}
# Fields whose largest value only means a very long job (a count of passes, trials or trees): the top is
# checked to parse, and the job trains with this instead.
LONG_AT_THE_TOP = {("kmeans", "epochs"): "3", ("kmeans", "local_lloyd_num_trials"): "3", ("fm", "epochs"): "3",
                   ("xgboost", "num_round"): "3", ("xgboost", "num_parallel_tree"): "3",
                   ("xgboost", "num_class"): "3"}
CATBOOST_PARAMETERS = {"F": "F:beta=2", "Focal": "Focal:focal_alpha=0.5;focal_gamma=2", "Huber": "Huber:delta=1",
                       "Lq": "Lq:q=2", "NumErrors": "NumErrors:greater_than=1", "Tweedie": "Tweedie:variance_power=1.5"}


def _schema(algorithm: str) -> type:
    return importlib.import_module(f"algorithms.{algorithm}").ALGORITHM.Hyperparameters


# ---- boundary values of a constraint --------------------------------------------------------------

def _real_ends(c: Real) -> tuple[list[float], list[str]]:
    """(accepted extremes, just-outside texts) of a finite-only real range."""
    inside, outside = [], ["nan"]
    for end, open_, toward in ((c.low, c.low_open, math.inf), (c.high, c.high_open, -math.inf)):
        if end is None:
            inside.append(math.copysign(sys.float_info.max, -toward))
            outside.append("inf" if toward < 0 else "-inf")
        else:
            inside.append(math.nextafter(end, toward) if open_ else float(end))
            outside.append(repr(float(end)) if open_ else repr(math.nextafter(end, -toward)))
    return inside, outside


def accepted(c: Constraint) -> list[str]:
    if isinstance(c, Integer):
        return [str(c.low + c.low_open) if c.low is not None else "-" + HUGE,
                str(c.high - c.high_open) if c.high is not None else HUGE]
    if isinstance(c, Real):
        return [repr(v) for v in _real_ends(c)[0]]
    if isinstance(c, Boolean):
        return ["True", "false"]
    if isinstance(c, Choice):
        return list(c.options)
    if isinstance(c, AutoOr):
        return ["auto", *accepted(c.inner)]
    if isinstance(c, ListOf):
        return [json.dumps([o]) for o in c.inner.options] + [json.dumps(list(c.inner.options))]
    if isinstance(c, IntegerIn):
        return [str(v) for v in c.values]
    if isinstance(c, EvalMetrics):
        return sorted(ALL_METRICS - {"tweedie-nloglik"}) + ["error@0.7", "ndcg@3-", "tweedie-nloglik@1.5"]
    if isinstance(c, Updaters):
        return [*UPDATERS, "grow_colmaker,prune", "grow_colmaker,refresh"]
    if isinstance(c, IntTuple):
        return ["(1)", "(-1,0,1)"]
    if isinstance(c, NestedIntLists):
        return ["[[0,1],[2]]", f"[[{INT32_MAX}]]"]
    if isinstance(c, ThreadCount):
        return ["-1", "1", str(2**31)]
    if isinstance(c, AutoOrInteger):
        return ["Auto", *accepted(c.inner)]
    if isinstance(c, EvalMetric):
        names = sorted({m for task in CATBOOST_METRICS.values() for m in task})
        return ["auto", "Auto", "Quantile:alpha=0.9", *(CATBOOST_PARAMETERS.get(n, n) for n in names)]
    if isinstance(c, Text):
        return ["any text"]
    raise AssertionError(f"no boundary values for {type(c).__name__}; teach this test about it")


def rejected(c: Constraint) -> list[str]:
    if isinstance(c, Integer):
        ends = [str(c.low - 1 + c.low_open)] if c.low is not None else []
        ends += [str(c.high + 1 - c.high_open), "1e20"] if c.high is not None else []
        return [*ends, "1.5", "nan", "inf", "abc"]
    if isinstance(c, Real):
        return _real_ends(c)[1] + ["abc"]
    if isinstance(c, Choice):
        first = c.options[0]
        return ["not-an-option", first.upper() if first.upper() != first else first.lower() + "x"]
    if isinstance(c, AutoOr):
        return ["AUTO", *(e for e in rejected(c.inner) if e)]
    if isinstance(c, ListOf):
        return ["[]", '["nope"]']
    if isinstance(c, Updaters):
        return [*c.invalid_examples(), "distcol", "grow_skmaker"]
    if isinstance(c, EvalMetrics):
        return [*c.invalid_examples(), "tweedie-nloglik@2"]
    if isinstance(c, (AutoOrInteger, ThreadCount)):
        return [e for e in c.invalid_examples() if e] + (["65536"] if isinstance(c, AutoOrInteger) else [])
    return [e for e in c.invalid_examples() if e]


def _fields(algorithm: str) -> Iterator[tuple[str, Constraint]]:
    for field in dataclasses.fields(_schema(algorithm)):
        yield field.name, field.metadata["constraint"]


REJECTED = [(a, name, bad) for a in algorithm_names() for name, c in _fields(a) for bad in rejected(c)]
ACCEPTED = [(a, name, value) for a in algorithm_names() for name, c in _fields(a) for value in accepted(c)]


@pytest.mark.parametrize(("algorithm", "field", "value"), REJECTED, ids=[f"{a}-{f}={v}" for a, f, v in REJECTED])
def test_just_outside_is_refused_naming_field_and_value(algorithm: str, field: str, value: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(_schema(algorithm), {**BASE[algorithm], field: value})
    assert f"Hyperparameter '{field}' has invalid value '{value}': must be " in caught.value.message


# ---- training at the accepted extremes ------------------------------------------------------------

def _companions(algorithm: str, field: str, value: str) -> dict[str, str]:
    """Other fields a value needs to take effect (or to be allowed at all)."""
    if algorithm == "fm":
        group, _, part = field.partition("_init_")
        methods = {"scale": "uniform", "value": "constant", "sigma": "normal"}
        if part in methods:
            return {f"{group}_init_method": methods[part]}
        if part == "method" and value != "normal":
            return {f"{group}_init_{'scale' if value == 'uniform' else 'value'}": "0.01"}
    if algorithm == "xgboost":
        return _xgboost_companions(field, value)
    if algorithm == "catboost":
        return {"max_leaves": {"grow_policy": "Lossguide"}, "min_data_in_leaf": {"grow_policy": "Depthwise"}}.get(
            field, {})
    if algorithm == "knn":
        return {"dimension_reduction_type": {"dimension_reduction_target": "2"},
                "dimension_reduction_target": {"dimension_reduction_type": "sign"},
                "faiss_index_ivf_nlists": {"index_type": "faiss.IVFFlat"},
                "faiss_index_pq_m": {"index_type": "faiss.IVFPQ"}}.get(field, {})
    if algorithm == "pca" and field == "extra_components":
        return {"algorithm_mode": "randomized"}
    return {}


def _xgboost_companions(field: str, value: str) -> dict[str, str]:
    dart = {"booster": "dart"}
    by_field = {"num_class": {"objective": "multi:softprob"}, "tweedie_variance_power": {"objective": "reg:tweedie"},
                "sketch_eps": {"tree_method": "approx"}, "normalize_type": dart, "rate_drop": dart, "one_drop": dart,
                "skip_drop": dart, "sample_type": dart, "lambda_bias": {"booster": "gblinear"}}
    if field in by_field:
        return by_field[field]
    if field == "objective" and value.startswith("multi:"):
        return {"num_class": "2"}
    if field == "updater" and value in ("shotgun", "coord_descent"):
        return {"booster": "gblinear"}
    if field == "eval_metric":
        name = value.split("@", 1)[0]
        objective = {"merror": "multi:softprob", "mlogloss": "multi:softprob", "ndcg": "rank:pairwise",
                     "map": "rank:pairwise", "poisson-nloglik": "count:poisson", "gamma-nloglik": "reg:gamma",
                     "gamma-deviance": "reg:gamma", "cox-nloglik": "survival:cox", "tweedie-nloglik": "reg:tweedie",
                     }.get(name, "binary:logistic" if name in ("auc", "aucpr", "logloss", "error") else None)
        return {"objective": objective, **({"num_class": "2"} if objective == "multi:softprob" else {})} \
            if objective else {}
    return {}


def _labels(algorithm: str, hp: dict[str, str]) -> str:
    """binary (0/1), multiclass (0/1/2) or positive (real > 0) labels for the job's task."""
    if algorithm == "xgboost":
        objective = hp.get("objective", "")
        return "binary" if objective.startswith(("binary:", "multi:", "rank:")) or objective == "reg:logistic" \
            else "positive"
    if algorithm in ("fm", "knn"):
        return "binary" if hp["predictor_type"] in ("binary_classifier", "classifier") else "positive"
    metric = hp.get("metric") or hp.get("eval_metric", "auto")
    if algorithm == "lightgbm" and metric in MULTICLASS_METRICS or metric == "MultiClass":
        return "multiclass"
    name = metric.split(":", 1)[0]
    if (algorithm == "lightgbm" and metric in REGRESSION_METRICS or algorithm == "catboost"
            and name in CATBOOST_METRICS[REGRESSION] and name not in ("NormalizedGini", "AUC")):
        return "positive"
    return "binary"


def _write_job(base: Path, algorithm: str, hp: dict[str, str]) -> None:
    rng = np.random.default_rng(0)
    rows = 1000 if algorithm == "rcf" else 40  # rcf needs a row for each of up to 1000 trees
    x = rng.uniform(0.1, 2.0, (rows, COLUMNS)).astype(np.float32)  # positive: csv_weights reads column 2
    kind = _labels(algorithm, hp)
    y = {"binary": (x[:, 0] > 1.0), "multiclass": np.digitize(x[:, 0], [0.7, 1.4]),
         "positive": 2 * x[:, 0] + x[:, 1]}[kind].astype(np.float32)
    data = base.parent / "data"
    data.mkdir()
    if algorithm == "fm":
        (data / "train.rec").write_bytes(encode_dense(x, y))
        channels = {"train": ([data / "train.rec"], "application/x-recordio-protobuf")}
    else:
        labelled = algorithm not in ("kmeans", "pca", "rcf")
        np.savetxt(data / "train.csv", np.column_stack([y, x]) if labelled else x, delimiter=",", fmt="%.6g")
        channel = "training" if algorithm == "catboost" else "train"
        channels = {channel: ([data / "train.csv"], "text/csv")}
        if algorithm == "xgboost":  # early_stopping_rounds has something to watch
            channels["validation"] = ([data / "train.csv"], "text/csv")
    write_job(base, hp, channels)


@pytest.mark.parametrize(("algorithm", "field", "value"), ACCEPTED, ids=[f"{a}-{f}={v}" for a, f, v in ACCEPTED])
def test_accepted_extremes_train_without_an_algorithm_error(algorithm: str, field: str, value: str,
                                                            tmp_path: Path) -> None:
    constraint = dict(_fields(algorithm))[field]
    constraint.parse(value)  # the generator's own sanity: the value is inside the range
    if (algorithm, field) in LONG_AT_THE_TOP and value in (HUGE, str(INT32_MAX)):
        value = LONG_AT_THE_TOP[algorithm, field]
    hp = {**BASE[algorithm], **_companions(algorithm, field, value), field: value}
    base = tmp_path / "ml"
    _write_job(base, algorithm, hp)
    code = run_training(importlib.import_module(f"algorithms.{algorithm}").ALGORITHM, Paths(base))
    failure = (base / "output" / "failure").read_text() if code else ""
    assert code in (0, 1), failure
    if code == 1:
        assert failure.startswith("ClientError: ") and field in failure, failure
