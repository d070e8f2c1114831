"""Factorization machines through `python -m common.entrypoint` as the image runs it: train, serve, hosts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
import scipy.sparse as sp

from algorithms.fm.algorithm import FactorizationMachines
from common.data.recordio_writer import encode_dense, encode_sparse
from tests.integration.helpers import serving, train, train_hosts
from tests.responses import decode_label_records
from tools.local import entrypoint_env, feed_pipes, write_job

NAN = (" is empty or NaN, and this algorithm needs a value in every field (only XGBoost, LightGBM and CatBoost "
       "read missing values); fill or drop it.")

USERS, ITEMS, K = 60, 40, 3
D = USERS + ITEMS
RECORDIO = "application/x-recordio-protobuf"


def ratings(rows: int, seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """One-hot user + item rows of a planted rank-3 recommender with noise (a tiny MovieLens)."""
    rng = np.random.default_rng(100)
    bias_u, bias_i = rng.normal(0, 0.5, USERS), rng.normal(0, 0.5, ITEMS)
    fu, fi = rng.normal(0, 0.6, (USERS, K)), rng.normal(0, 0.6, (ITEMS, K))
    draw = np.random.default_rng(seed)
    u, i = draw.integers(0, USERS, rows), draw.integers(0, ITEMS, rows)
    y = 3.5 + bias_u[u] + bias_i[i] + np.einsum("nk,nk->n", fu[u], fi[i]) + draw.normal(0, 0.3, rows)
    x = sp.csr_matrix((np.ones(2 * rows, np.float32), np.stack([u, USERS + i], 1).ravel(),
                       np.arange(0, 2 * rows + 1, 2)), shape=(rows, D))
    return x, y.astype(np.float32)


X, Y = ratings(4000, 1)
X_TEST, Y_TEST = ratings(1000, 2)
HP = {"feature_dim": str(D), "num_factors": "4", "predictor_type": "regressor", "epochs": "15",
      "mini_batch_size": "100", "linear_lr": "0.02", "factors_lr": "0.01", "factors_init_sigma": "0.05",
      "bias_lr": "0.05"}
CLASSIFIER_HP = {**HP, "predictor_type": "binary_classifier"}


def _write(tmp_path: Path, name: str, body: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


def _metric(stdout: str, name: str) -> float:
    return float(re.search(rf"#quality_metric: host=algo-1, test {name} <\w+>=(\S+)", stdout).group(1))


def _rmse(model: FactorizationMachines, x: sp.csr_matrix, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((model.raw_scores(x) - y) ** 2)))


def test_regressor_sparse_file_mode_with_test_channel(tmp_path: Path) -> None:
    base = tmp_path / "ml"
    write_job(base, HP, {"train": ([_write(tmp_path, "train.rec", encode_sparse(X, Y))], None),
                         "test": ([_write(tmp_path, "test.rec", encode_sparse(X_TEST, Y_TEST))], RECORDIO)})
    result = train("fm", base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert zipfile.is_zipfile(base / "model" / "model_algo-1")
    model = FactorizationMachines.load(base / "model")
    rmse = _metric(result.stdout, "rmse")
    assert rmse == pytest.approx(_rmse(model, X_TEST, Y_TEST), rel=1e-6)
    assert rmse < 0.6 * float(Y_TEST.std())
    assert f"#test_score (algo-1) : ('rmse', {rmse!r})" in result.stdout
    assert re.search(r"#quality_metric: host=algo-1, epoch=14, train rmse <loss>=\S+", result.stdout)
    assert "completed 100.0 % of epochs" in result.stdout and "train throughput=" in result.stdout


def test_classifier_pipe_mode_metrics(tmp_path: Path) -> None:
    labels, test_labels = (Y > np.median(Y)).astype(np.float32), (Y_TEST > np.median(Y)).astype(np.float32)
    base = tmp_path / "ml"
    channels = {"train": ([_write(tmp_path, "train.rec", encode_sparse(X, labels))], None),
                "test": ([_write(tmp_path, "test.rec", encode_sparse(X_TEST, test_labels))], None)}
    write_job(base, {**CLASSIFIER_HP, "epochs": "5"}, channels, input_mode="Pipe")
    feed_pipes(base, {"train": channels["train"]}, epochs=5)
    feed_pipes(base, {"test": channels["test"]}, epochs=1)
    result = train("fm", base)
    assert result.returncode == 0, result.stdout + result.stderr
    model = FactorizationMachines.load(base / "model")
    score = model.scores(X_TEST)
    predicted = score >= 0.5
    accuracy = _metric(result.stdout, "binary_classification_accuracy")
    assert accuracy == pytest.approx(np.mean(predicted == test_labels)) and accuracy > 0.75
    p = np.clip(score.astype(np.float64), 1e-12, 1 - 1e-12)
    entropy = -np.mean(test_labels * np.log(p) + (1 - test_labels) * np.log(1 - p))
    assert _metric(result.stdout, "binary_classification_cross_entropy") == pytest.approx(entropy, rel=1e-4)
    tp = np.sum(predicted & (test_labels == 1))
    f1 = 2 * tp / (2 * tp + np.sum(predicted & (test_labels == 0)) + np.sum(~predicted & (test_labels == 1)))
    assert _metric(result.stdout, r"binary_f_1\.000") == pytest.approx(f1)
    assert "#test_score (algo-1) : ('binary_f_1.000', " in result.stdout
    assert "<score>" in result.stdout.split("binary_classification_accuracy")[-1]


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_dense_rows_and_other_tensor_types_train_like_float32(tmp_path: Path, dtype: type) -> None:
    models = []
    for kind, rows in (("float32", X[:1000].toarray()), ("other", X[:1000].toarray().astype(dtype))):
        base = tmp_path / kind
        write_job(base, {**HP, "epochs": "2"}, {"train": ([_write(tmp_path, f"{kind}.rec",
                                                                  encode_dense(rows, Y[:1000]))], None)})
        result = train("fm", base)
        assert result.returncode == 0, result.stdout + result.stderr
        models.append(FactorizationMachines.load(base / "model"))
    np.testing.assert_array_equal(models[0].v, models[1].v)
    np.testing.assert_array_equal(models[0].w, models[1].w)


def test_two_hosts_sharded_no_worse_than_one(tmp_path: Path) -> None:
    files = [_write(tmp_path, f"part-{i}.rec", encode_sparse(X[i::4], Y[i::4])) for i in range(4)]
    hosts = ["algo-1", "algo-2"]
    for rank, host in enumerate(hosts):
        write_job(tmp_path / host, HP, {"train": (files[rank::2], None)}, host=host, hosts=hosts,
                  distribution="ShardedByS3Key")
    results = train_hosts("fm", [tmp_path / host for host in hosts], hosts)
    assert [r.returncode for r in results] == [0, 0], [r.stdout for r in results]
    assert not (tmp_path / "algo-2" / "model" / "model_algo-1").exists()
    single = tmp_path / "single"
    write_job(single, HP, {"train": (files, None)})
    assert train("fm", single).returncode == 0
    two = _rmse(FactorizationMachines.load(tmp_path / "algo-1" / "model"), X_TEST, Y_TEST)
    one = _rmse(FactorizationMachines.load(single / "model"), X_TEST, Y_TEST)
    assert two <= 1.05 * one, (two, one)


@pytest.mark.parametrize(("hyperparameters", "body", "content_type", "failure"), [
    ({}, encode_sparse(X[:10], Y[:10]), "text/csv",
     "Channel 'train' has ContentType 'text/csv'; supported: application/x-recordio-protobuf."),
    ({"feature_dim": "99"}, encode_sparse(X[:10], Y[:10]), None,
     "Row 1 of train/train.rec has 100 features but feature_dim is 99."),
    ({}, encode_sparse(sp.csr_matrix(([1.0], [120], [0, 1]), shape=(1, 100)), np.ones(1)), None,
     "Row 1 of train/train.rec: sparse features have key 120 but shape is [100]."),
    ({}, encode_dense(np.where(np.arange(200).reshape(2, 100) == 150, np.nan, 1.0), np.ones(2)), None,
     "Row 2 of train/train.rec, column 51" + NAN),
    ({"predictor_type": "binary_classifier"}, encode_sparse(X[:10], Y[:10]), None,
     f"Row 1 of train/train.rec has label {float(Y[0])!r}; binary_classifier needs labels 0 or 1."),
    ({}, encode_sparse(X[:10]), None,
     'Row 1 of train/train.rec has no label; every training and test record needs label["values"] with one value.'),
    ({"bias_init_method": "uniform"}, encode_sparse(X[:10], Y[:10]), None,
     "bias_init_method is 'uniform' but bias_init_scale is not set; give bias_init_scale."),
])
def test_bad_input_writes_the_failure_file(tmp_path: Path, hyperparameters: dict[str, str], body: bytes,
                                           content_type: str | None, failure: str) -> None:
    base = tmp_path / "ml"
    write_job(base, {**HP, **hyperparameters}, {"train": ([_write(tmp_path, "train.rec", body)], content_type)})
    result = train("fm", base)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (base / "output" / "failure").read_text() == f"ClientError: {failure}"


@pytest.fixture(scope="module", params=["regressor", "binary_classifier"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp(request.param)
    labels = Y if request.param == "regressor" else (Y > np.median(Y)).astype(np.float32)
    base = tmp / "ml"
    write_job(base, {**HP, "predictor_type": request.param, "epochs": "3"},
              {"train": ([_write(tmp, "train.rec", encode_sparse(X, labels))], None)})
    assert train("fm", base).returncode == 0
    return base


def test_served_model_answers_every_format(trained: Path) -> None:
    model = FactorizationMachines.load(trained / "model")
    rows = X_TEST[:3]
    expected = model.scores(rows)  # float32
    dense = rows.toarray().tolist()
    sparse = [{"keys": r.indices.tolist(), "shape": [D], "values": r.data.tolist()} for r in rows]
    bodies = {
        "application/json": json.dumps({"instances": [{"features": dense[0]},
                                                      {"data": {"features": sparse[1]}},
                                                      {"data": {"features": sparse[2]}}]}),
        "application/jsonlines": "\n".join(json.dumps({"data": {"features": s}}) for s in sparse) + "\n",
        RECORDIO: encode_sparse(rows),
        f"{RECORDIO}; dense": encode_dense(rows.toarray().astype(np.float64)),
    }
    names = ["score", "predicted_label"] if model.is_classifier else ["score"]

    def records(response: requests.Response, accept: str) -> list[dict[str, float]]:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith(accept)
        if accept == "application/json":
            return response.json()["predictions"]
        if accept == "application/jsonlines":
            return [json.loads(line) for line in response.text.splitlines()]
        return [{k: v[0] for k, v in r.items()} for r in decode_label_records(response.content)]

    with serving("fm", trained) as (url, _):
        for content_type, body in bodies.items():
            for accept in ("application/json", "application/jsonlines", RECORDIO):
                response = requests.post(url + "/invocations", data=body,
                                         headers={"Content-Type": content_type.split(";")[0], "Accept": accept})
                got = records(response, accept)
                assert [list(r) for r in got] == [names] * 3
                np.testing.assert_allclose([r["score"] for r in got], expected, rtol=1e-6)
                if model.is_classifier:
                    assert [r["predicted_label"] for r in got] == [float(s >= 0.5) for s in expected]
        default = requests.post(url + "/invocations", data=bodies["application/json"],
                                headers={"Content-Type": "application/json"})
        first = default.json()["predictions"][0]
        assert first["score"] == float(expected[0]) and isinstance(first.get("predicted_label", 0.0), float)

        def error(body: str | bytes, content_type: str = "application/json") -> tuple[int, str]:
            response = requests.post(url + "/invocations", data=body, headers={"Content-Type": content_type})
            return response.status_code, response.text.strip()

        assert error("1,0,1", "text/csv")[0] == 415
        assert error(json.dumps({"instances": [{"features": [1.0, 0.0]}]})) == (
            400, "Row 1 of request has 2 features but the model's feature_dim is 100.")
        bad_key = {"data": {"features": {"keys": [3, 100], "shape": [D], "values": [1.0, 1.0]}}}
        assert error(json.dumps({"instances": [bad_key]})) == (400, "Row 1 of request: key 100 is outside the "
                                                                    "shape [100].")
        nan_row = {"data": {"features": {"keys": [3], "shape": [D], "values": [float("nan")]}}}
        assert error(json.dumps({"instances": [nan_row]})) == (400, "Row 1 of request, column 4" + NAN)
        wrong_shape = encode_sparse(sp.csr_matrix(([1.0], [2], [0, 1]), shape=(1, 50)))
        assert error(wrong_shape, RECORDIO) == (400, "Row 1 of request has 50 features but the model's "
                                                     "feature_dim is 100.")


def test_inspect_exports_w0_w_and_v(trained: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "common.entrypoint", *args], capture_output=True, text=True,
                              env=entrypoint_env("fm", trained), timeout=60)

    exported = json.loads(run("inspect").stdout)
    model = FactorizationMachines.load(trained / "model")
    assert list(exported) == ["w0", "w", "V"]
    np.testing.assert_array_equal(np.asarray(exported["V"], np.float32), model.v)
    target = tmp_path / "fm.npz"
    assert run("inspect", "--format", "npz", "--output", str(target)).returncode == 0
    with np.load(target) as saved:
        assert saved["w"].shape == (D, 1) and saved["V"].shape == (D, 4)
    described = json.loads(run("describe").stdout)
    assert {"Name": "test:binary_f_beta", "Regex": r"#quality_metric: host=\S+, test binary_f_1\.000 <score>=(\S+)",
            "Type": "Maximize"} in described["metric_definitions"]
