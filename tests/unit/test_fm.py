"""Factorization machines: gradients vs finite differences, Adam step, planted models, artifact, errors."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithms.fm import kernels, training
from algorithms.fm.algorithm import FactorizationMachines
from algorithms.fm.artifact import MODEL_FILE, symbol_graph
from algorithms.fm.hyperparameters import FMHyperparameters
from common.data import content_types as ct
from common.data.batch import Batch
from common.data.content_types import MediaType
from common.data.ndarray_file import dump_ndarrays, load_ndarrays
from common.errors import UserError
from common.hyperparameters import parse_hyperparameters
from common.serving.app import invoke

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ndarray"
JSON = MediaType(ct.JSON)


def reference(x: np.ndarray, w0: float, w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The model equation (docs/images/fm.md, "Model equation"), pairwise, in float64."""
    x, v = np.asarray(x, np.float64), np.asarray(v, np.float64)
    gram = v @ v.T
    pairs = np.einsum("ni,ij,nj->n", x, np.triu(gram, 1), x)
    return w0 + x @ np.asarray(w, np.float64).reshape(-1) + pairs


def planted(rows: int, d: int, k: int, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray, tuple]:
    rng = np.random.default_rng(seed)
    x = sp.random(rows, d, density=0.08, random_state=seed, format="csr", dtype=np.float64)
    x.data = rng.uniform(0.5, 1.5, x.nnz)
    w0, w, v = 0.5, rng.normal(0, 1, d), rng.normal(0, 0.5, (d, k))
    return x.astype(np.float32), reference(x.toarray(), w0, w, v), (w0, w, v)


def hyperparameters(**overrides: object) -> FMHyperparameters:
    base = {"feature_dim": 30, "num_factors": 4, "predictor_type": "regressor"}
    return FMHyperparameters(**{**base, **overrides})


def test_sdk_wire_map_and_defaults() -> None:
    # What sagemaker.FactorizationMachines(num_factors=64, predictor_type="regressor", epochs=10,
    # factors_lr=0.01, clip_gradient=5.0, eps=1e-7).fit(record_set, mini_batch_size=500) sends.
    parsed = parse_hyperparameters(FMHyperparameters, {
        "feature_dim": "2625", "num_factors": "64", "predictor_type": "regressor", "epochs": "10",
        "factors_lr": "0.01", "clip_gradient": "5.0", "eps": "1e-07", "mini_batch_size": "500",
        "_tuning_objective_metric": "test:rmse"})
    assert (parsed.num_factors, parsed.epochs, parsed.clip_gradient, parsed.adam_eps) == (64, 10, 5.0, 1e-7)
    defaults = parse_hyperparameters(FMHyperparameters, {"feature_dim": "3", "num_factors": "2",
                                                         "predictor_type": "binary_classifier"})
    assert (defaults.bias_lr, defaults.bias_wd, defaults.linear_lr, defaults.linear_wd) == (0.1, 0.01, 0.001, 0.001)
    assert (defaults.factors_lr, defaults.factors_wd, defaults.factors_init_sigma) == (0.0001, 0.00001, 0.001)
    assert (defaults.bias_init_sigma, defaults.linear_init_sigma, defaults.mini_batch_size) == (0.01, 0.01, 1000)
    assert (defaults.epochs, defaults.eps, defaults.rescale_grad, defaults.clip_gradient) == (1, None, None, None)
    assert {defaults.bias_init_method, defaults.linear_init_method, defaults.factors_init_method} == {"normal"}


def test_hyperparameter_errors_are_exact() -> None:
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(FMHyperparameters, {
            "feature_dim": "3", "num_factors": "2", "predictor_type": "regressor",
            "linear_init_method": "uniform", "factors_init_method": "constant", "bias_lr": "-1", "k": "4"})
    assert caught.value.message == (
        "Hyperparameter 'bias_lr' has invalid value '-1': must be a number in the range [0, inf). "
        "Hyperparameter 'k' is not recognised; did you mean 'num_factors'?")
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(FMHyperparameters, {
            "feature_dim": "3", "num_factors": "2", "predictor_type": "multiclass_classifier",
            "linear_init_method": "uniform"})
    assert caught.value.message == ("Hyperparameter 'predictor_type' has invalid value 'multiclass_classifier': "
                                    "must be one of 'binary_classifier', 'regressor'.")
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(FMHyperparameters, {
            "feature_dim": "3", "num_factors": "2", "predictor_type": "regressor",
            "linear_init_method": "uniform", "factors_init_method": "constant"})
    assert caught.value.message == (
        "linear_init_method is 'uniform' but linear_init_scale is not set; give linear_init_scale. "
        "factors_init_method is 'constant' but factors_init_value is not set; give factors_init_value.")


def test_init_methods() -> None:
    hp = hyperparameters(bias_init_method="constant", bias_init_value=3.5, linear_init_method="uniform",
                         linear_init_scale=0.2, factors_init_sigma=0.1)
    state = training.initial_state(hp)
    assert state["w0"].tolist() == [3.5] and state["w"].dtype == np.float32
    assert np.abs(state["w"]).max() <= 0.2 and state["v"].shape == (30, 4)
    assert 0.07 < state["v"].std() < 0.13
    assert all(not state[m].any() for m in ("m0", "s0", "mw", "sw", "mv", "sv"))
    np.testing.assert_array_equal(training.initial_state(hp)["v"], state["v"])  # same on every host


def test_predict_matches_the_pairwise_equation() -> None:
    x, _, (w0, w, v) = planted(40, 30, 5, seed=1)
    model = FactorizationMachines(np.array([w0]), w, v, "regressor")
    expected = reference(x.toarray(), model.w0[0], model.w, model.v)
    np.testing.assert_allclose(model.raw_scores(x), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.raw_scores(x.toarray()), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("logistic", [False, True])
def test_gradients_match_finite_differences(logistic: bool) -> None:
    rng = np.random.default_rng(3)
    x = sp.random(6, 8, density=0.4, random_state=4, format="csr", dtype=np.float64)
    x.data = rng.normal(0, 1, x.nnz)
    y = (rng.random(6) > 0.5).astype(np.float64) if logistic else rng.normal(0, 1, 6)
    w0, w, v = np.array([0.3]), rng.normal(0, 0.5, 8), rng.normal(0, 0.5, (8, 3))
    indptr, indices = x.indptr.astype(np.int64), x.indices.astype(np.int32)

    def objective(w0: np.ndarray, w: np.ndarray, v: np.ndarray) -> float:
        yhat = reference(x.toarray(), w0[0], w, v)
        if logistic:
            return float(np.sum(np.logaddexp(0, yhat) - y * yhat))
        return float(np.sum(0.5 * (yhat - y) ** 2))

    gw0, gw, gv = np.zeros(1), np.zeros(8), np.zeros((8, 3))
    slot, features = np.full(8, -1, np.int64), np.zeros(8, np.int64)
    loss, touched = kernels.accumulate(indptr, indices, x.data, y, 0, 6, w0, w, v, 1.0, logistic, gw0, gw, gv,
                                       slot, features, 0, np.zeros(3))
    dense_w, dense_v = np.zeros(8), np.zeros((8, 3))
    dense_w[features[:touched]], dense_v[features[:touched]] = gw[:touched], gv[:touched]
    h = 1e-6
    for name, array, grad in (("w0", w0, gw0), ("w", w, dense_w), ("v", v, dense_v)):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + h
            up = objective(w0, w, v)
            array[index] = saved - h
            numeric[index] = (up - objective(w0, w, v)) / (2 * h)
            array[index] = saved
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7, err_msg=name)
    assert set(features[:touched]) == set(x.indices)


def test_one_step_is_mxnet_adam_on_touched_rows_only() -> None:
    hp = hyperparameters(feature_dim=5, num_factors=2, mini_batch_size=2, linear_wd=0.1, clip_gradient=0.05,
                         linear_lr=0.01)
    state = training.initial_state(hp)
    before = {name: value.copy() for name, value in state.items()}
    rows = training.Rows(np.array([0, 2, 3], np.int64), np.array([0, 3, 3], np.int32),
                         np.array([1.0, 2.0, -1.0], np.float32), np.array([1.5, -0.5], np.float32))
    trainer = training.Trainer(hp, state)
    trainer.train(rows)
    x = np.zeros((2, 5))
    x[0, [0, 3]], x[1, 3] = [1.0, 2.0], -1.0
    yhat = reference(x, before["w0"][0], before["w"], before["v"])
    grad = np.clip(x.T @ (yhat - rows.labels) / 2, -0.05, 0.05) + 0.1 * before["w"]
    m, s = 0.1 * grad, 0.001 * grad ** 2
    lr = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9)
    expected = before["w"] - lr * m / (np.sqrt(s) + 1e-8)
    touched = [0, 3]
    np.testing.assert_allclose(state["w"][touched], expected[touched], rtol=1e-5)
    np.testing.assert_array_equal(np.delete(state["w"], touched), np.delete(before["w"], touched))
    np.testing.assert_array_equal(state["v"][[1, 2, 4]], before["v"][[1, 2, 4]])
    assert trainer.step[0] == 1 and (trainer.slot == -1).all()


FAST = {"mini_batch_size": 50, "linear_lr": 0.02, "factors_lr": 0.02, "factors_init_sigma": 0.1, "bias_wd": 0.0,
        "linear_wd": 0.0, "factors_wd": 0.0}


def fit_rows(hp: FMHyperparameters, x: sp.csr_matrix, y: np.ndarray, epochs: int) -> FactorizationMachines:
    state = training.initial_state(hp)
    trainer = training.Trainer(hp, state)
    rows = training.Rows(*training.csr_parts(x), y.astype(np.float32))
    for _ in range(epochs):
        trainer.train(rows)
    return FactorizationMachines(state["w0"], state["w"], state["v"], hp.predictor_type)


def test_planted_regressor_is_recovered() -> None:
    x, y, _ = planted(6000, 30, 4, seed=5)
    model = fit_rows(hyperparameters(**FAST, bias_lr=0.05), x[:5000], y[:5000], epochs=60)
    error = model.raw_scores(x[5000:]) - y[5000:]
    assert np.sqrt(np.mean(error ** 2)) < 0.1 * y.std()


def test_planted_classifier_is_recovered() -> None:
    x, z, _ = planted(6000, 30, 4, seed=6)
    z = z - np.median(z)
    y = (z > 0).astype(np.float32)
    model = fit_rows(hyperparameters(**FAST, predictor_type="binary_classifier"), x[:5000], y[:5000], epochs=40)
    columns = model.predict(Batch(x[5000:]), JSON)
    assert set(columns) == {"score", "predicted_label"} and columns["score"].dtype == np.float32
    assert np.mean(columns["predicted_label"] == y[5000:]) > 0.9
    np.testing.assert_array_equal(columns["predicted_label"], (columns["score"] >= 0.5).astype(np.float32))


def test_artifact_round_trip_and_layout(tmp_path: Path) -> None:
    _, _, (w0, w, v) = planted(1, 30, 4)
    model = FactorizationMachines(np.array([w0]), w, v, "binary_classifier")
    model.save(tmp_path)
    with zipfile.ZipFile(tmp_path / MODEL_FILE) as archive:
        assert sorted(archive.namelist()) == ["meta.json", "params", "symbol.json"]
        params = load_ndarrays(archive.read("params"))
        meta = json.loads(archive.read("meta.json"))
        symbol = json.loads(archive.read("symbol.json"))
    assert {k: a.shape for k, a in params.items()} == {"arg:w0_weight": (1,), "arg:w1_weight": (30, 1),
                                                       "arg:v": (30, 4)}
    assert meta["training_parameters"]["feature_dim"] == 30
    assert symbol["nodes"][symbol["heads"][0][0]]["op"] == "LogisticRegressionOutput"
    assert "out_label" in [symbol["nodes"][i]["name"] for i in symbol["arg_nodes"]]
    loaded = FactorizationMachines.load(tmp_path)
    for name in ("w0", "w", "v"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded.predictor_type == "binary_classifier"
    assert list(loaded.export()) == ["w0", "w", "V"] and loaded.export()["w"].shape == (30, 1)
    assert symbol_graph(False)["nodes"][-1]["op"] == "LinearRegressionOutput"


def _zip(tmp_path: Path, params: bytes, meta: object) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("symbol.json", "{}")
        archive.writestr("params", params)
        archive.writestr("meta.json", json.dumps(meta))
    (tmp_path / MODEL_FILE).write_bytes(buffer.getvalue())
    return tmp_path


def test_mxnet_written_params_and_the_older_layout_load(tmp_path: Path) -> None:
    meta = {"training_parameters": {"feature_dim": 4, "predictor_type": "regressor"}}
    model = FactorizationMachines.load(_zip(tmp_path, (FIXTURES / "fm_params.nd").read_bytes(), meta))
    with np.load(FIXTURES / "fm_params.npz") as saved:  # what mxnet 1.9.1 loaded from the same file
        arrays = dict(zip(saved["names"].tolist(), (saved[f"array_{i}"] for i in range(3))))
    w0, w, v = arrays["arg:w0_weight"], arrays["arg:w1_weight"], arrays["arg:v"]
    x = np.array([[1.0, 0.0, 2.0, -1.0], [0.5, 0.5, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(model.predict(Batch(x), JSON)["score"], reference(x, w0[0], w, v), rtol=1e-5)
    older = dump_ndarrays({"Linear_Plus_Bias_bias": w0, "Linear_Plus_Bias_weight": w.T, "v": np.ascontiguousarray(v.T)})
    again = FactorizationMachines.load(_zip(tmp_path, older, meta))
    np.testing.assert_array_equal(again.v, model.v)


@pytest.mark.parametrize(("params", "meta", "message"), [
    ({"arg:w0_weight": np.ones(1, np.float32)}, {"training_parameters": {"predictor_type": "regressor"}},
     "params in model_algo-1 must hold w0_weight, w1_weight and v; it holds ['w0_weight']."),
    ({"w0_weight": np.ones(1, np.float32), "w1_weight": np.ones((3, 1), np.float32),
      "v": np.ones((2, 2), np.float32)}, {"training_parameters": {"predictor_type": "regressor"}},
     "v in model_algo-1 must have shape (3, num_factors); got (2, 2)."),
    ({"w0_weight": np.ones(1, np.float32), "w1_weight": np.ones((3, 1), np.float32),
      "v": np.ones((3, 2), np.float32)}, {"training_parameters": {}},
     "meta.json in model_algo-1 must give training_parameters.predictor_type as 'binary_classifier' or "
     "'regressor'."),
])
def test_bad_artifacts_say_what_is_wrong(tmp_path: Path, params: dict, meta: dict, message: str) -> None:
    with pytest.raises(UserError) as caught:
        FactorizationMachines.load(_zip(tmp_path, dump_ndarrays(params), meta))
    assert caught.value.message == message
    (tmp_path / MODEL_FILE).write_bytes(b"not a zip")
    with pytest.raises(UserError, match="is not a factorization machines zip archive"):
        FactorizationMachines.load(tmp_path)


def test_label_checks() -> None:
    x = sp.csr_matrix(np.eye(3, dtype=np.float32))
    good = training.labelled_rows(Batch(x, np.array([[0.0], [1.0], [1.0]], np.float32), 1, "train/a.rec"), True)
    assert good.labels.tolist() == [0.0, 1.0, 1.0] and good.indices.dtype == np.int32
    cases = [
        (np.array([[0.0], [2.0], [1.0]], np.float32), True,
         "Row 2 of train/a.rec has label 2.0; binary_classifier needs labels 0 or 1."),
        (np.array([[0.0], [-1.0], [1.0]], np.float32), True,
         "Row 2 of train/a.rec has label -1.0; binary_classifier needs labels 0 or 1."),
        (np.array([[0.0], [1.0], [np.nan]], np.float32), False,
         "Row 3 of train/a.rec has label nan; labels must be finite numbers."),
        (None, False, 'Row 1 of train/a.rec has no label; every training and test record needs label["values"] '
                      "with one value."),
        (np.ones((3, 2), np.float32), False, "Row 1 of train/a.rec has 2 label values; factorization machines "
                                             "take one."),
    ]
    for labels, classifier, message in cases:
        with pytest.raises(UserError) as caught:
            training.labelled_rows(Batch(x, labels, 1, "train/a.rec"), classifier)
        assert caught.value.message == message


def test_predict_checks_width_and_values() -> None:
    model = FactorizationMachines(np.zeros(1), np.zeros(4), np.zeros((4, 2)), "regressor")
    with pytest.raises(UserError) as caught:
        model.predict(Batch(np.zeros((1, 3), np.float32)), JSON)
    assert caught.value.message == "Row 1 of request has 3 features but the model's feature_dim is 4."
    with pytest.raises(UserError, match="^Row 1 of request, column 3 is empty or NaN"):
        invoke(model, b'{"instances": [[0, 1, NaN, 0]]}', "application/json", None)


def test_dense_and_sparse_rows_train_identically() -> None:
    x, y, _ = planted(300, 30, 4, seed=8)
    hp = hyperparameters(mini_batch_size=32, linear_lr=0.01, factors_lr=0.01)
    sparse, dense = fit_rows(hp, x, y, 2), fit_rows(hp, x.toarray(), y, 2)
    assert np.array_equal(sparse.v, dense.v) and np.array_equal(sparse.w, dense.w)
