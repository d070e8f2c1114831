"""k-NN through `python -m common.entrypoint` exactly as the image runs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn.datasets import make_blobs

from common.data.batch import Batch
from common.data.recordio_writer import encode_dense
from common.serving.request import Options
from tests.integration.helpers import serving, train, train_hosts
from tests.responses import decode_label_records
from tools.local import entrypoint_env, feed_pipes, write_job

NAN = (" is empty or NaN, and this algorithm needs a value in every field (only XGBoost, LightGBM and CatBoost "
       "read missing values); fill or drop it.")

X, _Y = make_blobs(n_samples=600, centers=3, n_features=4, cluster_std=2.5, random_state=3)
X = X.astype(np.float32)
Y = (_Y + 1).astype(np.float32)  # labels 1.0, 2.0, 3.0 as in the covtype notebook
HP = {"k": "3", "feature_dim": "4", "sample_size": "10000", "predictor_type": "classifier"}
RECORDIO = "application/x-recordio-protobuf"


def _csv(path: Path, x: np.ndarray, y: np.ndarray | None = None) -> Path:
    rows = x if y is None else np.hstack([y[:, None], x])
    path.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows))
    return path


def _model(base: Path):
    from algorithms.knn.algorithm import Knn

    return Knn.load(base / "model")


def _metric_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "#test_score" in line or "#quality_metric" in line]


def test_csv_file_mode_with_test_channel_prints_both_metric_forms(tmp_path: Path) -> None:
    base = tmp_path / "ml"
    write_job(base, HP, {"train": ([_csv(tmp_path / "train.csv", X[:500], Y[:500])], "text/csv; label_size=1"),
                         "test": ([_csv(tmp_path / "test.csv", X[500:], Y[500:])], "text/csv")})
    result = train("knn", base)
    assert result.returncode == 0, result.stdout + result.stderr
    predicted = _model(base).predict(Batch(X[500:]), Options())["predicted_label"]
    accuracy = float(np.mean(predicted == Y[500:]))
    lines = _metric_lines(result.stdout)
    assert lines[-2].endswith(f"#test_score (algo-1) : ('accuracy', {accuracy!r})")
    assert re.search(r"#quality_metric: host=\S+, test accuracy <score>=(\S+)", lines[-1]).group(1) == repr(accuracy)
    assert accuracy > 0.8


def test_recordio_pipe_mode_regressor(tmp_path: Path) -> None:
    target = X @ np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    train_file, test_file = tmp_path / "train.rec", tmp_path / "test.rec"
    train_file.write_bytes(encode_dense(X[:500].astype(np.float64), target[:500].astype(np.float64)))
    test_file.write_bytes(encode_dense(X[500:], target[500:]))
    base = tmp_path / "ml"
    channels = {"train": ([train_file], None), "test": ([test_file], RECORDIO)}
    write_job(base, {**HP, "predictor_type": "regressor", "k": "5", "index_type": "faiss.IVFFlat",
                     "mini_batch_size": "64"}, channels, input_mode="Pipe")
    feed_pipes(base, channels, epochs=1)
    result = train("knn", base)
    assert result.returncode == 0, result.stdout + result.stderr
    mse = float(re.search(r"#quality_metric: host=algo-1, test mse <loss>=(\S+)", result.stdout).group(1))
    assert "#test_score (algo-1) : ('mse', " in result.stdout
    assert 0 < mse < 0.2 * float(np.var(target))
    assert _model(base).index.ntotal == 500


def test_two_hosts_sharded_sample_their_share_and_the_leader_indexes_all(tmp_path: Path) -> None:
    parts = np.array_split(np.arange(len(X)), 4)
    files = []
    for i, rows in enumerate(parts):
        path = tmp_path / f"part-{i}.rec"
        path.write_bytes(encode_dense(X[rows], Y[rows]))
        files.append(path)
    tests = [_csv(tmp_path / f"test-{i}.csv", X[r], Y[r]) for i, r in enumerate((range(0, 70), range(70, 200)))]
    hosts = ["algo-1", "algo-2"]
    for rank, host in enumerate(hosts):
        write_job(tmp_path / host, {**HP, "sample_size": "101"}, {"train": (files[rank::2], None),
                                                                  "test": ([tests[rank]], "text/csv")},
                  host=host, hosts=hosts, distribution="ShardedByS3Key")
    results = train_hosts("knn", [tmp_path / host for host in hosts], hosts)
    outputs = [r.stdout for r in results]
    assert [r.returncode for r in results] == [0, 0], outputs
    assert not (tmp_path / "algo-2" / "model" / "model_algo-1").exists()
    model = _model(tmp_path / "algo-1")
    exported = model.export()
    row_ids = exported["row_ids"]
    in_host_order = np.concatenate([parts[0], parts[2], parts[1], parts[3]])
    assert len(row_ids) == 101 and len(set(row_ids.tolist())) == 101
    assert (row_ids < 300).sum() == 51 and (row_ids >= 300).sum() == 50  # algo-1 takes the odd one
    np.testing.assert_array_equal(exported["vectors"], X[in_host_order[row_ids]])
    np.testing.assert_array_equal(exported["labels"], Y[in_host_order[row_ids]])
    predicted = model.predict(Batch(X[:200]), Options())["predicted_label"]
    accuracy = float(np.mean(predicted == Y[:200]))  # both hosts' test shards, scored where they are
    assert _metric_lines(outputs[0])[-1].endswith(f"test accuracy <score>={accuracy!r}")
    assert not _metric_lines(outputs[1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("knn")
    base = tmp / "ml"
    write_job(base, HP, {"train": ([_csv(tmp / "train.csv", X, Y)], "text/csv")})
    result = train("knn", base)
    assert result.returncode == 0, result.stdout + result.stderr
    return base


def _post(url: str, body: bytes | str, content_type: str, accept: str | None = None) -> requests.Response:
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    return requests.post(url + "/invocations", data=body, headers=headers, timeout=30)


def test_every_inference_format_and_bad_requests_through_gunicorn(trained: Path) -> None:
    rows = X[:3]
    distances, ids = _model(trained).neighbors(rows)
    expected_labels = Y[ids].astype(float).tolist()
    votes = [max(set(labels), key=labels.count) for labels in expected_labels]
    csv_body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
    with serving("knn", trained, workers=2) as (url, _):
        plain = _post(url, csv_body, "text/csv")
        assert plain.headers["Content-Type"] == "application/json"
        assert plain.json() == {"predictions": [{"predicted_label": v} for v in votes]}
        instances = {"instances": [{"data": {"features": {"values": rows[0].tolist()}}}, {"features": rows[1].tolist()},
                                   {"data": {"features": {"keys": [0, 1, 2, 3], "shape": [4],
                                                          "values": rows[2].tolist()}}}]}
        verbose = _post(url, json.dumps(instances), "application/json", "application/json; verbose=true")
        assert verbose.headers["Content-Type"] == "application/json"
        predictions = verbose.json()["predictions"]
        assert [p["labels"] for p in predictions] == expected_labels
        assert [list(p) for p in predictions] == [["predicted_label", "distances", "labels"]] * 3
        np.testing.assert_allclose([p["distances"] for p in predictions], distances, rtol=1e-6)
        lines = "\n".join(json.dumps({"features": row.tolist()}) for row in rows)
        jsonl = _post(url, lines, "application/jsonlines", "application/jsonlines")
        assert jsonl.text.splitlines() == [json.dumps({"predicted_label": v}) for v in votes]
        jsonl_verbose = _post(url, lines, "application/jsonlines", "application/jsonlines;verbose=True")
        assert [json.loads(line)["labels"] for line in jsonl_verbose.text.splitlines()] == expected_labels
        body = encode_dense(rows.astype(np.float64))  # what the SDK's RecordSerializer sends
        proto = _post(url, body, RECORDIO, RECORDIO)
        assert proto.headers["Content-Type"] == RECORDIO
        assert decode_label_records(proto.content) == [{"predicted_label": [v]} for v in votes]
        proto_verbose = decode_label_records(_post(url, body, RECORDIO, RECORDIO + "; verbose=true").content)
        assert [r["labels"] for r in proto_verbose] == expected_labels
        np.testing.assert_allclose([r["distances"] for r in proto_verbose], distances)
        with_ids = _post(url, csv_body, "text/csv", "application/json; neighbor_ids=true").json()["predictions"]
        assert [p["neighbor_ids"] for p in with_ids] == ids.astype(float).tolist()
        wrong_width = _post(url, "1,2,3", "text/csv")
        assert (wrong_width.status_code, wrong_width.text) == (
            400, "Row 1 of request has 3 features but the model's feature_dim is 4.\n")
        nan = _post(url, "1,2,3,4\n1,nan,3,4", "text/csv")
        assert (nan.status_code, nan.text) == (400, "Row 2 of request, column 2" + NAN + "\n")
        assert _post(url, "1,2,3,4", "text/plain").status_code == 415
        refused = _post(url, "1,2,3,4", "text/csv", "text/html")
        assert refused.status_code == 406 and refused.text.startswith("Accept 'text/html' is not supported")


def test_metadata_edit_is_honoured_when_the_server_loads(trained: Path, tmp_path: Path) -> None:
    edited = tmp_path / "ml"
    shutil.copytree(trained / "model", edited / "model")
    meta_file = edited / "model" / "model_algo-1.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "k": 7, "predictor_type": "regressor"}))
    _, ids = _model(edited).neighbors(X[:2])
    with serving("knn", edited) as (url, _):
        got = _post(url, json.dumps({"instances": X[:2].tolist()}), "application/json",
                    "application/json;verbose=true").json()["predictions"]
    assert [len(p["labels"]) for p in got] == [7, 7]
    assert [p["predicted_label"] for p in got] == pytest.approx(Y[ids].astype(np.float64).mean(1).tolist())


@pytest.mark.parametrize(("hyperparameters", "rows", "message"), [
    ({"index_type": "faiss.IVFPQ", "index_metric": "COSINE", "k": "20", "sample_size": "10"}, None,
     "Hyperparameter 'index_metric' has value 'COSINE', which index_type 'faiss.IVFPQ' does not support; use 'L2', "
     "or index_type 'faiss.Flat' or 'faiss.IVFFlat'. Hyperparameter 'k' has invalid value '20': must be at most "
     "sample_size (10)."),
    ({}, "2.0,1,2,3\n1.0,1,2,3\n", "Row 1 of train/train.csv has 3 features but feature_dim is 4."),
    ({}, "2.0,1,2,3,4\n1.0,1,nan,3,4\n", "Row 2 of train/train.csv, column 3" + NAN),
    ({"k": "3"}, "2.0,1,2,3,4\n1.0,1,2,3,4\n", "k=3 is larger than the number of training rows (2)."),
    ({}, "", "The train channel holds no data rows."),
])
def test_bad_training_input_writes_one_clear_failure(tmp_path: Path, hyperparameters: dict[str, str],
                                                     rows: str | None, message: str) -> None:
    data = tmp_path / "train.csv"
    data.write_text(rows or "")
    base = tmp_path / "ml"
    write_job(base, {**HP, "k": "1", **hyperparameters}, {"train": ([data], "text/csv")})
    result = train("knn", base)
    assert result.returncode == 1
    assert (base / "output" / "failure").read_text() == f"ClientError: {message}"
    assert not (base / "model" / "model_algo-1").exists()


def test_describe_publishes_the_quality_metric_regexes(trained: Path) -> None:
    described = json.loads(subprocess.run([sys.executable, "-m", "common.entrypoint", "describe"], check=True,
                                          capture_output=True, text=True, env=entrypoint_env("knn", trained)).stdout)
    assert {"Name": "test:accuracy", "Regex": "#quality_metric: host=\\S+, test accuracy <score>=(\\S+)",
            "Type": "Maximize"} in described["metric_definitions"]
    assert {"Name": "test:mse", "Regex": "#quality_metric: host=\\S+, test mse <loss>=(\\S+)",
            "Type": "Minimize"} in described["metric_definitions"]
