"""LightGBM: schema, the tabular data contract, problem inference, training in-process, responses, metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from algorithms.lightgbm.algorithm import LightGBM
from algorithms.lightgbm.hyperparameters import LightGBMHyperparameters
from common.errors import UserError
from common.hyperparameters import parse_hyperparameters
from common.paths import Paths
from common.serving.app import invoke
from common.tabular.tables import categorical_columns, holdout, locate, problem_of, read_tables
from common.training import run_training
from tools.local import write_job


def tabular(n: int = 600, classes: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Target first; column 2 (feature 1) is a categorical code 0..3 that matters."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).round(4)
    code = rng.integers(0, 4, size=n)
    signal = x[:, 0] + (code == 2) * 1.5
    if classes == 1:
        y = 3.0 * signal + rng.normal(scale=0.1, size=n)
    else:
        y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1])).astype(float)
    return np.column_stack([x[:, 0], code, x[:, 1], x[:, 2]]), y


def write_csv(path: Path, x: np.ndarray, y: np.ndarray | None = None) -> Path:
    rows = x if y is None else np.column_stack([y, x])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(",".join(f"{v:g}" for v in row) + "\n" for row in rows))
    return path


def test_defaults_are_the_guides_and_bad_values_are_named() -> None:
    hp = parse_hyperparameters(LightGBMHyperparameters, {"sagemaker_program": "transfer_learning.py"})
    assert (hp.num_boost_round, hp.learning_rate, hp.num_leaves, hp.bagging_freq, hp.max_depth,
            hp.min_data_in_leaf, hp.early_stopping_rounds) == (100, 0.1, 64, 1, 6, 3, 10)
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(LightGBMHyperparameters, {"n_estimators": "5", "is_unbalance": "True",
                                                        "learning_rate": "1.0"})
    assert caught.value.message == (
        "Hyperparameter 'n_estimators' is not recognised; did you mean 'num_boost_round'? "
        "Hyperparameter 'learning_rate' has invalid value '1.0': must be a number in the range (0, 1).")
    with pytest.raises(UserError, match="'is_unbalance' and 'scale_pos_weight' cannot be used together"):
        parse_hyperparameters(LightGBMHyperparameters, {"is_unbalance": "True", "scale_pos_weight": "2"})


def test_holdout_is_pandas_sample_frac_02_seed_200() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"i": np.arange(1001)})
    validation = frame.sample(frac=0.2, random_state=200)
    train_rows, validation_rows = holdout(1001)
    assert validation_rows.tolist() == validation.index.tolist()
    assert train_rows.tolist() == frame.drop(validation.index).index.tolist()


def test_layouts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_csv(data / "train" / "a.csv", np.ones((2, 2)), np.zeros(2))
    layout = locate(data, {"train"})
    assert [p.name for p in layout.train_files] == ["a.csv"] and not layout.validation_files
    write_csv(data / "training" / "train" / "b.csv", np.ones((2, 2)), np.zeros(2))
    write_csv(data / "training" / "validation" / "c.csv", np.ones((2, 2)), np.zeros(2))
    (data / "training" / "categorical_index.json").write_text('{"cat_index_list": [1]}')
    layout = locate(data, {"training"})
    assert ([p.name for p in layout.train_files], [p.name for p in layout.validation_files],
            layout.categorical_json.name) == (["b.csv"], ["c.csv"], "categorical_index.json")
    with pytest.raises(UserError, match="^Both 'train' and 'training' channel are identified"):
        locate(data, {"train", "training"})
    with pytest.raises(UserError, match="^Neither 'train' nor 'training' channel is identified"):
        locate(data, {"validation"})
    (data / "training" / "other.json").write_text("{}")
    with pytest.raises(UserError, match="Found 2 JSON files in the 'training' channel"):
        locate(data, {"training"})
    with pytest.raises(UserError, match=r"^Could not find any valid file ending in '\.csv' or '\.csv\.gz' "
                                        r"under '.*nothing/train'\.$"):
        locate(tmp_path / "nothing", {"train"})


def test_categorical_index_rules(tmp_path: Path) -> None:
    path = tmp_path / "categorical_index.json"
    path.write_text('{"cat_index_list": [3, 1]}')
    assert categorical_columns(path, 5) == (0, 2)
    path.write_text('{"whatever": [2]}')  # the script takes the first value, whatever its key
    assert categorical_columns(path, 5) == (1,)
    for text, message in (('{"cat_index_list": [0]}', "must be column numbers 1..4 (0 is the target); got [0]"),
                          ('{"cat_index_list": [5]}', "got [5]"),
                          ('{"cat_index_list": [1, 1]}', "repeated indices"),
                          ('{"cat_index_list": ["a"]}', "must be a list of integers")):
        path.write_text(text)
        with pytest.raises(UserError, match=re.escape(message)):
            categorical_columns(path, 5)


def test_bad_cells_are_named_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("1,2,3\n0,,4\n1,abc,5\n")
    with pytest.raises(UserError) as caught:
        read_tables([path], 3, (), strings_ok=False)
    assert caught.value.message == "Line 3 of t.csv, column 2: 'abc' is not a number."
    path.write_text("label,a,b\n1,2,3\n")
    with pytest.raises(UserError, match=r"^Line 1 of t.csv, column 1: 'label' is not a number \(a header row\?"):
        read_tables([path], 3, (), strings_ok=False)
    path.write_text("1,2,3\n0,1\n")
    with pytest.raises(UserError) as caught:
        read_tables([path], 3, (), strings_ok=False)
    assert caught.value.message == ("Line 2 of t.csv has 2 fields but earlier lines have 3; every row needs the "
                                    "same columns.")
    path.write_text("1,red,3\n0,2,4\n")
    with pytest.raises(UserError) as caught:
        read_tables([path], 3, (0,), strings_ok=False)
    assert caught.value.message == ("Categorical column 2 holds 'red' (line 1 of t.csv); this algorithm needs "
                                    "categories encoded as non-negative integers.")
    path.write_text("1,-3,3\n0,2,4\n")
    with pytest.raises(UserError, match=r"^Categorical column 2 holds -3; categories must be integers in 0\.\."):
        read_tables([path], 3, (0,), strings_ok=False)
    path.write_text("1,3.0,\n0,,4\n")  # empty cells are missing values, as LightGBM handles them
    table = read_tables([path], 3, (0,), strings_ok=False)
    assert np.isnan(table.features[1, 0]) and table.features[0, 0] == 3 and np.isnan(table.features[0, 1])


def test_problem_inference_and_override() -> None:
    assert problem_of(np.array([0.0, 1.0, 1.0]), "auto") == ("classification", 2)
    assert problem_of(np.array([0.0, 2.0, 1.0]), "auto") == ("classification", 3)
    assert problem_of(np.array([0.5, 2.0, 1.0]), "auto") == ("regression", 1)
    assert problem_of(np.array([1.0, 2.0, 3.0]), "auto") == ("regression", 1)  # not 0..K-1
    assert problem_of(np.array([0.0, 2.0, 1.0]), "regression") == ("regression", 1)
    with pytest.raises(UserError, match=r"^The training labels hold a single value \(1\.0\)"):
        problem_of(np.array([1.0, 1.0]), "auto")
    with pytest.raises(UserError, match=r"^Classification labels must be the integers 0\.\.K-1; got 3 distinct"):
        problem_of(np.array([1.0, 2.0, 3.0]), "classification")


def _train(tmp_path: Path, y: np.ndarray, x: np.ndarray, **hp: str) -> tuple[LightGBM, str]:
    base = tmp_path / "ml"
    files = [write_csv(tmp_path / "in" / "train.csv", x, y), tmp_path / "in" / "categorical_index.json"]
    files[1].write_text('{"cat_index_list": [2]}')
    write_job(base, {"num_boost_round": "15", **hp}, {"train": (files, "text/csv")})
    assert run_training(LightGBM, Paths(base)) == 0, (base / "output" / "failure").read_text()
    return LightGBM.load(base / "model"), (base / "model" / "__models_info__.json").read_text()


def test_binary_multiclass_regression_responses(tmp_path: Path) -> None:
    x, y = tabular(classes=2)
    model, info = _train(tmp_path / "b", y, x)
    assert json.loads(info)["categorical_features"] == [1] and json.loads(info)["problem_type"] == "classification"
    body, kind = invoke(model, b"0.5,2,0.1,0.2\n-1,0,0,0\n", "text/csv", "application/json;verbose")
    answer = json.loads(body)
    assert kind == "application/json" and list(answer) == ["probabilities-1d", "probabilities", "predicted_label"]
    assert np.allclose(np.sum(answer["probabilities"], axis=1), 1) and answer["predicted_label"] == [1, 0]
    assert answer["probabilities-1d"] == [[p[1]] for p in answer["probabilities"]]
    assert "predicted_label" not in json.loads(invoke(model, b"0.5,2,0.1,0.2\n", "text/csv", None)[0])
    x, y = tabular(classes=3)
    model, _ = _train(tmp_path / "m", y, x)
    lines = invoke(model, b"0.5,2,0.1,0.2\n-1,0,0,0\n", "text/csv", "application/jsonlines;verbose")[0]
    rows = [json.loads(line) for line in lines.decode().splitlines()]
    assert len(rows) == 2 and len(rows[0]["probabilities"]) == 3 and isinstance(rows[0]["predicted_label"], int)
    x, y = tabular(classes=1)
    model, _ = _train(tmp_path / "r", y, x)
    assert list(json.loads(invoke(model, b"0.5,2,0.1,0.2\n", "text/csv", "application/json;verbose")[0])) == \
        ["prediction"]
    with pytest.raises(UserError) as caught:
        invoke(model, b"0.5,2,0.1\n", "text/csv", None)
    assert caught.value.message == "Row 1 of request has 3 features but the model's feature count is 4."
    exported = model.export()
    assert exported["feature_importance_gain"].shape == (4,) and "tree_info" in json.loads(str(exported["model_dump"]))


def test_unseen_categories_and_missing_values_are_predicted(tmp_path: Path) -> None:
    x, y = tabular(classes=2)
    model, _ = _train(tmp_path, y, x)
    answer = json.loads(invoke(model, b"0.5,97,,0.2\n", "text/csv", None)[0])
    assert len(answer["probabilities"]) == 1  # LightGBM sends an unseen category down the "other" branch


def test_metric_mismatch_and_guide_regexes(tmp_path: Path) -> None:
    x, y = tabular(classes=1)
    base = tmp_path / "ml"
    write_job(base, {"metric": "auc"}, {"train": ([write_csv(tmp_path / "t.csv", x, y)], "text/csv")})
    assert run_training(LightGBM, Paths(base)) == 1
    assert (base / "output" / "failure").read_text() == (
        "ClientError: metric 'auc' does not apply to regression training; use one of: rmse, l1, l2, huber, fair.")
    line = "[7]\ttrain's multi_logloss: 0.41\tval's multi_logloss: 0.455"
    definitions = {d.name: d for d in LightGBM.metrics}
    assert definitions["multi_logloss"].regex == "multi_logloss: ([0-9\\.]+)"
    assert re.search(definitions["multi_logloss"].regex, line).group(1) == "0.41"  # the guide's: train first
    assert re.search(definitions["validation:multi_logloss"].regex, line).group(1) == "0.455"
    assert definitions["multi_logloss"].to_json()["Type"] == "Minimize"
    assert definitions["auc"].to_json()["Type"] == "Maximize"
