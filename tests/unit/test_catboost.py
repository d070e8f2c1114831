"""CatBoost: schema, string categories, training in-process, responses, one-host rule, metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from algorithms.catboost.algorithm import CatBoost, _params
from algorithms.catboost.hyperparameters import CatBoostHyperparameters
from common.errors import UserError
from common.hyperparameters import parse_hyperparameters
from common.paths import Paths
from common.serving.app import invoke
from common.tabular.tables import read_tables
from common.training import run_training
from tests.unit.test_lightgbm import tabular, write_csv
from tools.local import write_job

REPO = Path(__file__).resolve().parents[2]
FAST = {"iterations": "30", "learning_rate": "0.2", "verbose": "10"}


def test_defaults_and_grow_policy_dependent_parameters() -> None:
    hp = parse_hyperparameters(CatBoostHyperparameters, {"random_seed": "1.0", "max_bin": "Auto"})
    assert (hp.iterations, hp.learning_rate, hp.depth, hp.early_stopping_rounds, hp.random_seed) == \
        (500, 0.009, 6, 5, 1)
    params = _params(hp, "classification", 2)
    assert (params["loss_function"], params["eval_metric"]) == ("Logloss", "AUC")
    assert "max_leaves" not in params and "min_data_in_leaf" not in params and "border_count" not in params
    lossguide = parse_hyperparameters(CatBoostHyperparameters, {"grow_policy": "Lossguide", "max_bin": "64"})
    params = _params(lossguide, "classification", 3)
    assert (params["loss_function"], params["eval_metric"], params["max_leaves"], params["border_count"]) == \
        ("MultiClass", "MultiClass", 31, 64)
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(CatBoostHyperparameters, {"thread_count": "0", "max_depth": "4"})
    assert caught.value.message == (
        "Hyperparameter 'thread_count' has invalid value '0': must be -1 (all cores) or a positive integer. "
        "Hyperparameter 'max_depth' is not recognised; did you mean 'depth'?")


def test_string_categories_are_kept_and_integral_text_normalised(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("1,red,0.5\n0,3.0,1.5\n1,3,\n")
    table = read_tables([path], 3, (0,), strings_ok=True)
    assert table.categories[0].tolist() == ["red", "3", "3"] and np.isnan(table.features[2, 1])
    path.write_text("1,2,0.5\n0,,1.5\n")
    with pytest.raises(UserError) as caught:
        read_tables([path], 3, (0,), strings_ok=True)
    assert caught.value.message == ("Categorical column 2 is empty in row 2 of the training data; categorical "
                                    "values must be integers or strings.")


def _train(tmp_path: Path, y: np.ndarray, x: np.ndarray | None = None, rows: str | None = None,
           **hp: str) -> tuple[int, Path]:
    base = tmp_path / "ml"
    data = tmp_path / "in" / "train.csv"
    if rows is not None:
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text(rows)
    else:
        write_csv(data, x, y)
    index = tmp_path / "in" / "categorical_index.json"
    index.write_text('{"cat_index_list": [2]}')
    write_job(base, {**FAST, **hp}, {"training": ([data, index], "text/csv")})
    return run_training(CatBoost, Paths(base)), base


def test_binary_multiclass_regression_responses(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    x, y = tabular(classes=2)
    code, base = _train(tmp_path / "b", y, x)
    assert code == 0
    out = capfd.readouterr().out
    assert re.search(CatBoost.metrics[0].regex, out) and "bestIteration = " in out
    model = CatBoost.load(base / "model")
    answer = json.loads(invoke(model, b"0.5,2,0.1,0.2\n-1,0,0,0\n", "text/csv", "application/json;verbose")[0])
    assert list(answer) == ["probabilities", "predicted_label"] and answer["predicted_label"] == [1, 0]
    assert np.allclose(np.sum(answer["probabilities"], axis=1), 1)
    with pytest.raises(UserError) as caught:
        invoke(model, b"0.5,2.5,0.1,0.2\n", "text/csv", None)
    assert caught.value.message == "Row 1 of request, column 2 is categorical and must hold an integer; got 2.5."
    assert len(json.loads(invoke(model, b"0.5,41,,0.2\n", "text/csv", None)[0])["probabilities"]) == 1  # unseen
    exported = model.export()
    assert exported["feature_importance"].shape == (4,) and "oblivious_trees" in json.loads(str(exported["model_dump"]))
    x, y = tabular(classes=3)
    code, base = _train(tmp_path / "m", y, x)
    lines = invoke(CatBoost.load(base / "model"), b"0,1,0,0\n", "text/csv", "application/jsonlines;verbose")[0]
    row = json.loads(lines)
    assert code == 0 and len(row["probabilities"]) == 3 and row["predicted_label"] in (0, 1, 2)
    x, y = tabular(classes=1)
    code, base = _train(tmp_path / "r", y, x)
    answer = json.loads(invoke(CatBoost.load(base / "model"), b"0.5,2,0.1,0.2\n", "text/csv", None)[0])
    assert code == 0 and list(answer) == ["prediction"] and len(answer["prediction"]) == 1


def test_string_categories_train_and_numeric_ones_serve(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    colours = np.array(["red", "green", "3"])[rng.integers(0, 3, 300)]
    x = rng.normal(size=300)
    y = ((colours == "red") | (x > 1)).astype(int)
    rows = "".join(f"{label},{v:.3f},{c},1\n" for label, v, c in zip(y, x, colours))
    code, base = _train(tmp_path, y, rows=rows)
    assert code == 0
    model = CatBoost.load(base / "model")
    assert model.info["string_categories"] is True
    answer = json.loads(invoke(model, b"0.1,3,1\n0.1,3.0,1\n0.1,red,1\n2.5,green,1\n", "text/csv", None)[0])
    probabilities = np.array(answer["probabilities"])
    assert probabilities.shape == (4, 2) and probabilities[0, 1] == probabilities[1, 1]  # 3.0 is category 3
    assert probabilities[2, 1] > probabilities[0, 1]  # red is the positive class's category
    lines = invoke(model, b"0.1,red,1\n", "text/csv", "application/jsonlines; verbose=true")[0].decode().splitlines()
    assert json.loads(lines[0])["predicted_label"] == 1
    with pytest.raises(UserError, match="^Row 2 of request, column 2 is categorical and empty"):
        invoke(model, b"0.1,red,1\n0.2,,1\n", "text/csv", None)
    with pytest.raises(UserError, match="^The request must be rows of 3 comma-separated values"):
        invoke(model, b"0.1,red\n", "text/csv", None)
    with pytest.raises(UserError, match="^The request must be rows of 3 comma-separated values"):
        invoke(model, b"oops,red,1\n", "text/csv", None)


def test_bad_training_input_fails_with_one_sentence(tmp_path: Path) -> None:
    code, base = _train(tmp_path / "a", np.zeros(0), rows="0,1.5,2,3\n0,2.5,1,3\n")
    assert code == 1
    assert (base / "output" / "failure").read_text() == (
        "ClientError: The training labels hold a single value (0.0); give at least two classes, or set "
        "problem_type=regression to fit a constant.")
    code, base = _train(tmp_path / "b", np.zeros(0), rows="0,x1,2,3\n1,2.5,1,3\n")
    assert code == 1
    assert (base / "output" / "failure").read_text() == "ClientError: Line 1 of train.csv, column 2: 'x1' is not " \
        "a number (a header row? CSV data must have no header, target first)."
    x, y = tabular(classes=2)
    code, base = _train(tmp_path / "c", y, x, eval_metric="NoSuchMetric")
    assert code == 1 and (base / "output" / "failure").read_text().startswith(
        "ClientError: Hyperparameter 'eval_metric' has invalid value 'NoSuchMetric': must be ")


def test_several_hosts_are_refused(tmp_path: Path) -> None:
    from common.algorithm import TrainingJob
    from common.cluster.collective import Cluster, Collective
    from common.metrics import MetricsEmitter

    job = TrainingJob(None, {}, Paths(tmp_path), Cluster(("algo-1", "algo-2"), "algo-1"), Collective(),
                      MetricsEmitter("algo-1"), None)  # type: ignore[arg-type]
    with pytest.raises(UserError) as caught:
        CatBoost.train(job)
    assert caught.value.message == ("CatBoost trains on one instance only (CPU), but this job has 2 hosts "
                                    "(algo-1, algo-2); set instance_count=1.")


def test_published_regex() -> None:
    definitions = {d.name: d for d in CatBoost.metrics}
    line = "bestTest = 0.8712345"
    assert re.search(definitions["AUC"].regex, line).group(1) == "0.8712345"
    assert definitions["AUC"].to_json() == {"Name": "AUC", "Regex": "bestTest = ([0-9\\.]+)", "Type": "Maximize"}
    assert definitions["MultiClass"].to_json()["Type"] == "Minimize"
