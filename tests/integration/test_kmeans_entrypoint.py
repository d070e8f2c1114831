"""k-means through `python -m common.entrypoint` exactly as the image runs it."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import scipy.sparse as sp
from sklearn.datasets import make_blobs

from common.data.recordio_writer import encode_dense, encode_sparse
from tests.integration.helpers import serving, train, train_hosts
from tools.local import entrypoint_env, feed_pipes, write_job

X, _ = make_blobs(n_samples=2000, centers=5, n_features=4, random_state=1)
X = X.astype(np.float32)
HP = {"k": "5", "feature_dim": "4", "mini_batch_size": "400", "force_dense": "True"}


def _inertia(centers: np.ndarray, x: np.ndarray = X) -> float:
    return float(((x[:, None, :] - centers[None]) ** 2).sum(-1).min(1).sum())


def _centers(base: Path) -> np.ndarray:
    from algorithms.kmeans.algorithm import KMeans

    return KMeans.load(base / "model").centers


def test_csv_file_mode_with_test_channel(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    np.savetxt(data, X, delimiter=",")
    before = data.read_bytes()
    base = tmp_path / "ml"
    write_job(base, {**HP, "eval_metrics": '["msd", "ssd"]'},
              {"train": ([data], "text/csv"), "test": ([data], "text/csv;label_size=0")})
    result = train("kmeans", base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (base / "model" / "model_algo-1").is_file()
    assert data.read_bytes() == before  # training data is never modified
    lines = [line for line in result.stdout.splitlines() if "#quality_metric" in line]
    assert re.search(r"#quality_metric: host=algo-1, test msd <loss>=(\S+)", lines[-2])
    assert re.search(r"#quality_metric: host=algo-1, test ssd <loss>=(\S+)", lines[-1])
    assert "#throughput_metric: host=algo-1, train throughput=" in result.stdout


def test_progress_lines_beside_unchanged_metric_lines(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    np.savetxt(data, X, delimiter=",")
    base = tmp_path / "ml"
    write_job(base, {**HP, "epochs": "2", "extra_center_factor": "2", "eval_metrics": '["msd", "ssd"]'},
              {"train": ([data], "text/csv"), "test": ([data], "text/csv;label_size=0")})
    result = train("kmeans", base, {"SM_PROGRESS_INTERVAL_S": "0"})  # a progress line after every mini-batch
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    speed = r"(?:[\d,.]+ rows/s|[\d.]+ s each)"
    assert re.search(rf"\] epoch 1/2: 1,200 rows, {speed}, elapsed [\d.]+ s$", out, re.M)  # total not known yet
    assert re.search(rf"\] epoch 2/2: 800/2,000 rows \(40\.0 %\), {speed}, elapsed [\d.]+ s, ETA [\d.]+ s$", out, re.M)
    assert re.search(rf"\] epoch 2/2: 2,000 rows in [\d.]+ s, {speed}$", out, re.M)
    assert re.search(r"\] training: 1/2 epochs \(50\.0 %\), .*, ETA [\d.]+ s$", out, re.M)
    assert "] Metrics: train:msd is the mean squared distance from training rows" in out
    assert "#progress_metric: host=algo-1, completed 50.0 % of epochs" in out
    assert re.search(r"#throughput_metric: host=algo-1, train throughput=\d+(\.\d+)? records/second$", out, re.M)
    lines = [line for line in out.splitlines() if "#quality_metric" in line]
    assert [re.search(r"#quality_metric: host=algo-1, (train msd|test msd|test ssd) <loss>=(\S+)$", line).group(1)
            for line in lines] == ["train msd", "test msd", "test ssd"]


def test_sparse_recordio_in_pipe_mode_two_epochs(tmp_path: Path) -> None:
    data = tmp_path / "train.rec"
    data.write_bytes(encode_sparse(sp.csr_matrix(X)))
    base = tmp_path / "ml"
    channels = {"train": ([data], None)}
    write_job(base, {**HP, "epochs": "2"}, channels, input_mode="Pipe")
    feed_pipes(base, channels, epochs=2)
    result = train("kmeans", base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _inertia(_centers(base)) < 1.05 * _inertia(_reference_centers())


def _reference_centers() -> np.ndarray:
    from sklearn.cluster import KMeans as SkKMeans

    return SkKMeans(5, n_init=3, random_state=0).fit(X).cluster_centers_


def test_bad_hyperparameters_write_the_failure_file(tmp_path: Path) -> None:
    base = tmp_path / "ml"
    write_job(base, {"k": "0", "feature_dim": "4", "mini_batch_siz": "10", "init_method": "k-means++"},
              {"train": ([], "text/csv")})
    result = train("kmeans", base)
    assert result.returncode == 1
    assert (base / "output" / "failure").read_text() == (
        "ClientError: Hyperparameter 'k' has invalid value '0': must be an integer in the range [1, inf). "
        "Hyperparameter 'mini_batch_siz' is not recognised; did you mean 'mini_batch_size'? "
        "Hyperparameter 'init_method' has invalid value 'k-means++': must be one of 'random', 'kmeans++'.")
    assert "Traceback" not in (base / "output" / "failure").read_text()


def test_empty_train_channel_is_a_client_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    base = tmp_path / "ml"
    write_job(base, HP, {"train": ([empty], "text/csv")})
    result = train("kmeans", base)
    assert result.returncode == 1
    assert (base / "output" / "failure").read_text() == "ClientError: The train channel holds no data rows."


def test_two_hosts_sharded_make_one_model_as_good_as_one_host(tmp_path: Path) -> None:
    files = []
    for i, part in enumerate(np.array_split(X, 4)):
        path = tmp_path / f"part-{i}.rec"
        path.write_bytes(encode_dense(part))
        files.append(path)
    hosts = ["algo-1", "algo-2"]
    for rank, host in enumerate(hosts):
        write_job(tmp_path / host, {**HP, "epochs": "2"}, {"train": (files[rank::2], None)}, host=host, hosts=hosts,
                  distribution="ShardedByS3Key")
    results = train_hosts("kmeans", [tmp_path / host for host in hosts], hosts)
    assert [r.returncode for r in results] == [0, 0], [r.stdout for r in results]
    assert (tmp_path / "algo-1" / "model" / "model_algo-1").is_file()
    assert not (tmp_path / "algo-2" / "model" / "model_algo-1").exists()
    assert _inertia(_centers(tmp_path / "algo-1")) < 1.02 * _inertia(_reference_centers())


def test_two_hosts_refine_on_one_sample_of_both_shards(tmp_path: Path) -> None:
    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.datasets import load_digits

    digits = load_digits().data
    x = digits[np.random.default_rng(0).permutation(len(digits))].astype(np.float32)
    hosts = ["algo-1", "algo-2"]
    for rank, (host, shard) in enumerate(zip(hosts, np.array_split(x, 2))):
        path = tmp_path / f"part-{rank}.rec"
        path.write_bytes(encode_dense(shard))
        write_job(tmp_path / host, {"k": "10", "feature_dim": "64", "init_method": "kmeans++"},
                  {"train": ([path], None)}, host=host, hosts=hosts, distribution="ShardedByS3Key")
    results = train_hosts("kmeans", [tmp_path / host for host in hosts], hosts)
    assert [r.returncode for r in results] == [0, 0], [r.stdout for r in results]
    assert f"on {len(x)} sampled rows" in results[0].stdout  # every row of both shards
    assert "sampled rows" not in results[1].stdout
    assert not (tmp_path / "algo-2" / "model" / "model_algo-1").exists()
    best = SkKMeans(10, n_init=3, random_state=0).fit(digits).inertia_
    assert _inertia(_centers(tmp_path / "algo-1"), x) <= 1.01 * best


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("kmeans")
    data = tmp / "train.rec"
    data.write_bytes(encode_dense(X))
    base = tmp / "ml"
    write_job(base, HP, {"train": ([data], None)})
    assert train("kmeans", base).returncode == 0
    return base


def test_chunked_bodies_and_payload_limit(trained: Path) -> None:
    with serving("kmeans", trained, extra_env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "6"}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        body = b"1,2,3,4\n" * 100

        def chunked(payload: bytes) -> http.client.HTTPResponse:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.putrequest("POST", "/invocations")
            connection.putheader("Content-Type", "text/csv")
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            try:
                for start in range(0, len(payload), 1 << 16):
                    piece = payload[start:start + (1 << 16)]
                    connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                connection.send(b"0\r\n\r\n")
            except BrokenPipeError:  # the server answered (413) and closed before the client finished sending
                pass
            return connection.getresponse()

        response = chunked(body)
        assert response.status == 200 and len(json.loads(response.read())["predictions"]) == 100
        too_big = chunked(b"1,2,3,4\n" * ((7 << 20) // 8))
        assert too_big.status == 413
        sized = requests.post(url + "/invocations", data=b"1,2,3,4\n" * ((7 << 20) // 8),
                              headers={"Content-Type": "text/csv"})
        assert sized.status_code == 413
        assert requests.get(url + "/ping").status_code == 200  # still alive


def test_sigterm_stops_the_server_cleanly(trained: Path) -> None:
    with serving("kmeans", trained) as (_, server):
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert time.monotonic() - started < 30


def test_describe_inspect_and_usage(trained: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "common.entrypoint", *args], capture_output=True, text=True,
                              env=entrypoint_env("kmeans", trained), timeout=60)

    described = json.loads(run("describe").stdout)
    assert {"Name": "test:msd", "Regex": "#quality_metric: host=\\S+, test msd <loss>=(\\S+)",
            "Type": "Minimize"} in described["metric_definitions"]
    exported = json.loads(run("inspect").stdout)
    np.testing.assert_allclose(exported["centroids"], _centers(trained))
    target = tmp_path / "model.npz"
    assert run("inspect", "--format", "npz", "--output", str(target)).returncode == 0
    np.testing.assert_array_equal(np.load(target)["centroids"], _centers(trained))
    usage = subprocess.run([sys.executable, "-m", "common.entrypoint"], capture_output=True, text=True,
                           env=entrypoint_env("kmeans", trained))
    assert usage.returncode == 2 and "usage: <image> train | serve" in usage.stderr
    unknown = subprocess.run([sys.executable, "-m", "common.entrypoint", "train"], capture_output=True, text=True,
                             env={**entrypoint_env("kmeans", trained), "ALGORITHM": "nope"})
    assert unknown.returncode == 1 and "ALGORITHM='nope' names no folder under algorithms/." in unknown.stderr


def test_sigterm_stops_training_quickly_and_says_so(tmp_path: Path) -> None:
    base = tmp_path / "ml"
    write_job(base, HP, {"train": ([], None)}, input_mode="Pipe")
    (base / "input" / "data").mkdir(parents=True)
    os.mkfifo(base / "input" / "data" / "train_0")  # nobody writes: training blocks on it
    process = subprocess.Popen([sys.executable, "-m", "common.entrypoint", "train"],
                               env=entrypoint_env("kmeans", base), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGTERM
    assert (base / "output" / "failure").read_text() == (
        "Training stopped by SIGTERM before the first checkpoint; nothing to resume from.")
