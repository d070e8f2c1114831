"""PCA through `python -m common.entrypoint` exactly as the image runs it: train, serve (gunicorn), hosts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithms.pca.algorithm import PCA
from common.data.recordio_writer import encode_dense, encode_sparse
from tests.integration.helpers import train, train_hosts
from tools.local import entrypoint_env, feed_pipes, write_job

NAN = (" is empty or NaN, and this algorithm needs a value in every field (only XGBoost, LightGBM and CatBoost "
       "read missing values); fill or drop it.")

RNG = np.random.default_rng(5)
X = ((RNG.standard_normal((2000, 3)) * [6.0, 3.0, 1.5]) @ np.linalg.qr(RNG.standard_normal((6, 3)))[0].T
     + 0.2 * RNG.standard_normal((2000, 6)) + 4.0).astype(np.float32)
HP = {"feature_dim": "6", "num_components": "3", "mini_batch_size": "500"}


def _exact(x: np.ndarray | sp.csr_matrix, center: bool) -> tuple[np.ndarray, np.ndarray]:
    dense = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
    if center:
        dense = dense - dense.mean(axis=0)
    _, s, vt = np.linalg.svd(dense, full_matrices=False)
    return s, vt.T


def _check_model(base: Path, x: np.ndarray | sp.csr_matrix, center: bool, k: int = 3) -> PCA:
    model = PCA.load(base / "model")
    s, v = _exact(x, center)
    assert model.v.shape == (x.shape[1], k) and model.s.shape == (k,)
    assert (model.mean is not None) == center
    np.testing.assert_allclose(model.s, s[:k][::-1], rtol=1e-5)  # ascending: most significant last
    assert np.abs(np.sum(model.v * v[:, :k][:, ::-1], axis=0)).min() > 1 - 1e-6
    return model


def test_csv_file_mode_regular_with_test_channel(tmp_path: Path) -> None:
    data, labelled = tmp_path / "train.csv", tmp_path / "test.csv"
    np.savetxt(data, X, delimiter=",")
    np.savetxt(labelled, np.hstack([np.ones((len(X), 1)), X]), delimiter=",")  # label column first
    base = tmp_path / "ml"
    write_job(base, HP, {"train": ([data], "text/csv"), "test": ([labelled], "text/csv;label_size=1")})
    result = train("pca", base)
    assert result.returncode == 0, result.stdout + result.stderr
    model = _check_model(base, X, center=True)
    assert (base / "model" / "model_algo-1").read_bytes()[:8] == (0x112).to_bytes(8, "little")
    error = float(re.search(r"#test_score \(algo-1\) : \('reconstruction_error', (\S+)\)", result.stdout).group(1))
    assert error == pytest.approx(float(model.squared_residuals(X).mean()), rel=1e-6)
    assert "#throughput_metric: host=algo-1, train throughput=" in result.stdout


def test_dense_recordio_pipe_mode_randomized(tmp_path: Path) -> None:
    data = tmp_path / "train.rec"
    data.write_bytes(encode_dense(X.astype(np.float64)))  # what the SDK writes for a float64 array
    base = tmp_path / "ml"
    channels = {"train": ([data], None)}  # no ContentType: recordIO-protobuf
    write_job(base, {**HP, "algorithm_mode": "randomized", "extra_components": "2"}, channels, input_mode="Pipe")
    feed_pipes(base, channels, epochs=4)  # one epoch per pass
    result = train("pca", base)
    assert result.returncode == 0, result.stdout + result.stderr
    _check_model(base, X, center=True)
    assert "completed 100.0 % of epochs" in result.stdout


@pytest.mark.parametrize("mode", ["regular", "randomized"])
def test_sparse_recordio_file_mode_without_mean(tmp_path: Path, mode: str) -> None:
    matrix = sp.random(3000, 40, density=0.05, random_state=2, format="csr", dtype=np.float32)
    matrix.data = matrix.data * 10
    data = tmp_path / "train.rec"
    data.write_bytes(encode_sparse(matrix))
    base = tmp_path / "ml"
    write_job(base, {"feature_dim": "40", "num_components": "2", "mini_batch_size": "100", "subtract_mean": "False",
                     "algorithm_mode": mode, "extra_components": "38"}, {"train": ([data], None)})
    result = train("pca", base)
    assert result.returncode == 0, result.stdout + result.stderr
    _check_model(base, matrix, center=False, k=2)
    assert "extra_components=38 is used only in randomized mode; ignored." in result.stdout or mode == "randomized"


@pytest.mark.parametrize("mode", ["regular", "randomized"])
def test_two_hosts_sharded_equal_one_host(tmp_path: Path, mode: str) -> None:
    files = []
    for i, part in enumerate(np.array_split(X, 4)):
        path = tmp_path / f"part-{i}.rec"
        path.write_bytes(encode_dense(part))
        files.append(path)
    hosts = ["algo-1", "algo-2"]
    hyperparameters = {**HP, "algorithm_mode": mode}
    for rank, host in enumerate(hosts):
        write_job(tmp_path / host, hyperparameters, {"train": (files[rank::2], None)}, host=host, hosts=hosts,
                  distribution="ShardedByS3Key")
    results = train_hosts("pca", [tmp_path / host for host in hosts], hosts)
    assert [r.returncode for r in results] == [0, 0], [r.stdout for r in results]
    assert not (tmp_path / "algo-2" / "model" / "model_algo-1").exists()
    two = PCA.load(tmp_path / "algo-1" / "model")
    single = tmp_path / "single"
    write_job(single, hyperparameters, {"train": (files, None)})
    assert train("pca", single).returncode == 0
    one = PCA.load(single / "model")
    np.testing.assert_allclose(two.s, one.s, rtol=1e-5)
    np.testing.assert_allclose(two.v, one.v, atol=1e-5)
    np.testing.assert_allclose(two.mean, one.mean, rtol=1e-5)


@pytest.mark.parametrize(("hyperparameters", "rows", "failure"), [
    ({"num_components": "7"}, X, "num_components=7 is larger than feature_dim=6; it can be at most feature_dim."),
    ({"feature_dim": "5"}, X, "Row 1 of train/train.csv has 6 features but feature_dim is 5."),
    ({}, np.where(np.arange(12).reshape(2, 6) == 9, np.nan, 1.0), "Row 2 of train/train.csv, column 4" + NAN),
    ({}, X[:2], "num_components=3 is larger than the number of training rows (2)."),
    ({"subtract_mean": "yes"}, X, "Hyperparameter 'subtract_mean' has invalid value 'yes': must be true or false."),
])
def test_bad_input_writes_the_failure_file(tmp_path: Path, hyperparameters: dict[str, str], rows: np.ndarray,
                                           failure: str) -> None:
    data = tmp_path / "train.csv"
    np.savetxt(data, rows, delimiter=",")
    base = tmp_path / "ml"
    write_job(base, {**HP, **hyperparameters}, {"train": ([data], "text/csv")})
    result = train("pca", base)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (base / "output" / "failure").read_text() == f"ClientError: {failure}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pca")
    data = tmp / "train.rec"
    data.write_bytes(encode_dense(X))
    base = tmp / "ml"
    write_job(base, HP, {"train": ([data], None)})
    assert train("pca", base).returncode == 0
    return base


def test_describe_and_inspect(trained: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "common.entrypoint", *args], capture_output=True, text=True,
                              env=entrypoint_env("pca", trained), timeout=60)

    described = json.loads(run("describe").stdout)
    assert {"Name": "test:reconstruction_error",
            "Regex": "#test_score \\(\\S+\\) : \\('reconstruction_error', (\\S+)\\)"} in described["metric_definitions"]
    assert described["inference"]["default_accept"] == "application/json"
    exported = json.loads(run("inspect").stdout)
    model = PCA.load(trained / "model")
    assert list(exported) == ["s", "v", "mean"]
    np.testing.assert_array_equal(np.asarray(exported["v"], np.float32), model.v)
    target = tmp_path / "model.npz"
    assert run("inspect", "--format", "npz", "--output", str(target)).returncode == 0
    with np.load(target) as saved:
        np.testing.assert_array_equal(saved["s"], model.s)
        assert saved["mean"].shape == (1, 6)
