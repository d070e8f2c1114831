"""LightGBM and CatBoost train with the default hyperparameter sets exactly as JumpStart sends them: every key,
every value a string (`eval_metric="Auto"`, `max_bin="Auto"`, `"True"`/`"False"` booleans), on the three tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from algorithms.catboost.algorithm import CatBoost
from algorithms.lightgbm.algorithm import LightGBM
from common.paths import Paths
from common.training import run_training
from tools.local import write_job

# `hyperparameters.retrieve_default(model_id=..., model_version="*")` for the JumpStart tabular models,
# as the SageMaker developer guide lists them.
LIGHTGBM_DEFAULTS = {
    "num_boost_round": "100", "early_stopping_rounds": "10", "metric": "auto", "learning_rate": "0.1",
    "num_leaves": "64", "feature_fraction": "0.9", "bagging_fraction": "0.9", "bagging_freq": "1",
    "max_depth": "6", "min_data_in_leaf": "3", "max_delta_step": "0.0", "lambda_l1": "0.0", "lambda_l2": "0.0",
    "boosting": "gbdt", "min_gain_to_split": "0.0", "scale_pos_weight": "1.0", "tree_learner": "serial",
    "feature_fraction_bynode": "1.0", "is_unbalance": "False", "max_bin": "255", "num_threads": "0",
    "verbosity": "1", "use_dask": "False",
}
LIGHTGBM_REGRESSION_EXTRA = {"tweedie_variance_power": "1.5"}
CATBOOST_DEFAULTS = {
    "iterations": "500", "early_stopping_rounds": "5", "eval_metric": "Auto", "learning_rate": "0.009",
    "depth": "6", "l2_leaf_reg": "3", "random_strength": "1.0", "max_leaves": "31", "rsm": "1",
    "sampling_frequency": "PerTreeLevel", "min_data_in_leaf": "1", "bagging_temperature": "1",
    "boosting_type": "Auto", "scale_pos_weight": "1.0", "max_bin": "Auto", "grow_policy": "SymmetricTree",
    "random_seed": "0", "thread_count": "-1", "verbose": "1",
}


def _task_data(task: str, rows: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, 4))
    if task == "regression":
        return x, x @ np.array([1.0, -1.0, 0.5, 0.0]) + rng.normal(scale=0.1, size=rows)
    classes = 2 if task == "binary" else 3
    return x, np.digitize(x[:, 0] + 0.3 * x[:, 1], np.quantile(x[:, 0], np.linspace(0, 1, classes + 1)[1:-1]))


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("algorithm", [LightGBM, CatBoost], ids=["lightgbm", "catboost"])
def test_the_default_set_trains(tmp_path: Path, algorithm: type, task: str) -> None:
    x, y = _task_data(task)
    data = tmp_path / "train.csv"
    np.savetxt(data, np.column_stack([y, x]), delimiter=",", fmt="%.6g")
    if algorithm is LightGBM:
        hyperparameters = {**LIGHTGBM_DEFAULTS, **(LIGHTGBM_REGRESSION_EXTRA if task == "regression" else {})}
    else:
        hyperparameters = {**CATBOOST_DEFAULTS, "iterations": "50"}  # the default 500 only takes longer
    write_job(tmp_path / "ml", hyperparameters, {"train": ([data], "text/csv")})
    code = run_training(algorithm, Paths(tmp_path / "ml"))
    failure = tmp_path / "ml" / "output" / "failure"
    assert code == 0, failure.read_text() if failure.exists() else ""
    assert algorithm.load(tmp_path / "ml" / "model") is not None
