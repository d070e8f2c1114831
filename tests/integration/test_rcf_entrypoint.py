"""RCF through `python -m common.entrypoint` exactly as the image runs it: train, serve (gunicorn), 2 hosts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from algorithms.rcf.algorithm import RandomCutForest
from common.data.recordio_writer import encode_dense
from common.metrics import template_regex
from tests.integration.helpers import serving, train, train_hosts
from tests.responses import decode_label_records
from tools.local import entrypoint_env, feed_pipes, write_job

NAN = (" is empty or NaN, and this algorithm needs a value in every field (only XGBoost, LightGBM and CatBoost "
       "read missing values); fill or drop it.")

RNG = np.random.default_rng(11)
X = RNG.standard_normal((3000, 3)).astype(np.float32)
TEST_X = np.vstack([RNG.standard_normal((490, 3)), RNG.uniform(6, 9, (10, 3)) * RNG.choice([-1, 1], (10, 3))])
TEST_Y = np.r_[np.zeros(490), np.ones(10)]
HP = {"feature_dim": "3", "num_trees": "50", "num_samples_per_tree": "64", "mini_batch_size": "1000",
      "eval_metrics": '["accuracy", "precision_recall_fscore"]'}
QUALITY = re.compile(r"#quality_metric: host=algo-1, test (\S+) <score>=(\S+)")


def _job(base: Path, hyperparameters: dict[str, str], channels: dict, input_mode: str = "File",
         distributions: dict[str, str] | None = None, **hosts: object) -> None:
    """write_job gives every channel one distribution: set train ShardedByS3Key, test FullyReplicated."""
    write_job(base, hyperparameters, channels, input_mode, **hosts)  # type: ignore[arg-type]
    config_path = base / "input" / "config" / "inputdataconfig.json"
    config = json.loads(config_path.read_text())
    wanted = {"train": "ShardedByS3Key", "test": "FullyReplicated", **(distributions or {})}
    for name in config:
        config[name]["S3DistributionType"] = wanted[name]
    config_path.write_text(json.dumps(config))


def _csv(path: Path, rows: np.ndarray) -> Path:
    np.savetxt(path, rows, delimiter=",")
    return path


def test_csv_file_mode_with_labelled_test_channel(tmp_path: Path) -> None:
    data = _csv(tmp_path / "train.csv", X)
    labelled = _csv(tmp_path / "test.csv", np.column_stack([TEST_Y, TEST_X]))  # label first
    base = tmp_path / "ml"
    _job(base, HP, {"train": ([data], "text/csv;label_size=0"), "test": ([labelled], "text/csv;label_size=1")})
    result = train("rcf", base)
    assert result.returncode == 0, result.stdout + result.stderr
    model = RandomCutForest.load(base / "model")
    assert model.forest.num_trees == 50 and model.forest.tree_mass == 60  # 3000 // 50 rows per tree
    quality = QUALITY.findall(result.stdout)
    assert [name for name, _ in quality] == ["accuracy", "precision", "recall", "precision_negative",
                                             "recall_negative", "f1_negative", "f1"]
    assert result.stdout.rstrip().splitlines()[-2].endswith(f"test f1 <score>={quality[-1][1]}")
    assert float(quality[-1][1]) > 0.8
    assert "#test_score (algo-1) : ('f1', " in result.stdout
    described = json.loads(subprocess.run([sys.executable, "-m", "common.entrypoint", "describe"], text=True,
                                          capture_output=True, env=entrypoint_env("rcf", base)).stdout)
    f1 = next(d for d in described["metric_definitions"] if d["Name"] == "test:f1")
    assert f1 == {"Name": "test:f1", "Regex": "#quality_metric: host=\\S+, test f1 <score>=(\\S+)", "Type": "Maximize"}
    assert re.search(f1["Regex"], result.stdout).group(1) == quality[-1][1]
    assert template_regex("{value}") == "(\\S+)"


def test_recordio_pipe_mode_with_recordio_test_labels(tmp_path: Path) -> None:
    data, labelled = tmp_path / "train.rec", tmp_path / "test.rec"
    data.write_bytes(encode_dense(X.astype(np.float64)))  # what the SDK writes for a float64 array
    labelled.write_bytes(encode_dense(TEST_X.astype(np.float32), TEST_Y.astype(np.float32)))
    base = tmp_path / "ml"
    channels = {"train": ([data], None), "test": ([labelled], None)}  # no ContentType: recordIO-protobuf
    _job(base, {**HP, "eval_metrics": "accuracy"}, channels, input_mode="Pipe")
    feed_pipes(base, channels, epochs=1)
    result = train("rcf", base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [name for name, _ in QUALITY.findall(result.stdout)] == ["accuracy", "f1"]
    assert "completed 100.0 % of epochs" in result.stdout


def _two_hosts(tmp_path: Path, distribution: str) -> tuple[list[int], list[str]]:
    files = [_csv(tmp_path / f"part-{i}.csv", part) for i, part in enumerate(np.array_split(X, 4))]
    hosts = ["algo-1", "algo-2"]
    labelled = _csv(tmp_path / "test.csv", np.column_stack([TEST_Y, TEST_X]))
    for rank, host in enumerate(hosts):
        _job(tmp_path / host, HP, {"train": (files[rank::2], "text/csv"),
                                   "test": ([labelled], "text/csv;label_size=1")},
             distributions={"train": distribution}, host=host, hosts=hosts)
    results = train_hosts("rcf", [tmp_path / host for host in hosts], hosts)
    return [r.returncode for r in results], [r.stdout for r in results]


def test_two_hosts_build_their_share_and_the_leader_gathers_one_forest(tmp_path: Path) -> None:
    returncodes, outputs = _two_hosts(tmp_path, "ShardedByS3Key")
    assert returncodes == [0, 0], outputs
    assert all("Built 25 trees on this host." in out for out in outputs)
    assert "3000 samples gathered from 3000 rows on 2 host(s)." in outputs[0]
    assert not (tmp_path / "algo-2" / "model").exists()
    assert "test f1 <score>=" in outputs[0] and "test f1" not in outputs[1]
    forest = RandomCutForest.load(tmp_path / "algo-1" / "model").forest
    assert forest.num_trees == 50 and forest.tree_mass == 60
    points = forest.trees.points
    # Rows from both hosts' shards (files 0, 2 on algo-1 and 1, 3 on algo-2) are in the forest: all of them here.
    assert len(np.unique(points, axis=0)) == 3000
    scores = forest.score(TEST_X.astype(np.float32))
    assert scores[490:].min() > np.percentile(scores[:490], 99)


def test_two_hosts_refuse_a_replicated_train_channel(tmp_path: Path) -> None:
    returncodes, outputs = _two_hosts(tmp_path, "FullyReplicated")
    assert returncodes == [1, 1], outputs
    for host in ("algo-1", "algo-2"):
        assert (tmp_path / host / "output" / "failure").read_text() == (
            "ClientError: The train channel must be ShardedByS3Key when training on 2 hosts; it is FullyReplicated.")


@pytest.mark.parametrize(("hyperparameters", "rows", "distributions", "failure"), [
    ({"num_trees": "10"}, X, None, "Hyperparameter 'num_trees' has invalid value '10': must be an integer in the "
                                   "range [50, 1000]."),
    ({"feature_dim": "4"}, X, None, "Row 1 of train/train.csv has 3 features but feature_dim is 4."),
    ({}, np.where(np.arange(9).reshape(3, 3) == 4, np.nan, 1.0), None,
     "Row 2 of train/train.csv, column 2" + NAN),
    ({}, X[:40], None, "The train channel holds 40 rows, fewer than num_trees=50; every tree needs at least one row."),
    ({}, X, {"test": "ShardedByS3Key"}, "Channel 'test' has S3DistributionType 'ShardedByS3Key'; supported: "
                                        "FullyReplicated."),
    ({"eval_metrics": "f1"}, X, None, "Hyperparameter 'eval_metrics' has invalid value 'f1': must be a JSON list "
                                      "of one of 'accuracy', 'precision_recall_fscore' (a comma-separated list is "
                                      "accepted too)."),
])
def test_bad_input_writes_the_failure_file(tmp_path: Path, hyperparameters: dict[str, str], rows: np.ndarray,
                                           distributions: dict[str, str] | None, failure: str) -> None:
    data = _csv(tmp_path / "train.csv", rows)
    labelled = _csv(tmp_path / "test.csv", np.column_stack([TEST_Y, TEST_X]))
    base = tmp_path / "ml"
    _job(base, {**HP, **hyperparameters}, {"train": ([data], "text/csv"), "test": ([labelled], "text/csv")},
         distributions=distributions)
    result = train("rcf", base)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (base / "output" / "failure").read_text() == f"ClientError: {failure}"


def test_constant_features_and_unlabelled_test_data(tmp_path: Path) -> None:
    rows = np.column_stack([X[:, :2], np.full(len(X), 7.0)])
    data = _csv(tmp_path / "train.csv", rows)
    unlabelled = _csv(tmp_path / "test.csv", TEST_X)
    base = tmp_path / "ml"
    _job(base, HP, {"train": ([data], "text/csv"), "test": ([unlabelled], "text/csv;label_size=0")})
    result = train("rcf", base)
    assert result.returncode == 1
    assert "Feature(s) [2] are constant in the sample" in result.stdout
    assert (base / "output" / "failure").read_text() == (
        "ClientError: The test channel needs one label per row (1 = anomaly, 0 = normal); "
        "row 1 of test/test.csv has none.")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("rcf")
    data = tmp / "train.rec"
    data.write_bytes(encode_dense(X))
    base = tmp / "ml"
    _job(base, HP, {"train": ([data], None)})
    assert train("rcf", base).returncode == 0
    return base


def test_served_verbose_scores_carry_the_attribution(trained: Path) -> None:
    """The every-format check is tests/integration/test_every_image_serves.py; this is what rcf adds."""
    forest = RandomCutForest.load(trained / "model").forest
    rows = np.array([[0.1, -0.2, 0.3], [8.0, 0.0, 0.0], [0.0, 0.0, -6.5]], np.float32)
    scores = np.round(forest.score(rows), 10)
    high, low = forest.attribution(rows)
    csv_body = "\n".join(",".join(repr(float(v)) for v in r) for r in rows)
    with serving("rcf", trained) as (url, _):
        verbose = requests.post(url + "/invocations", data=csv_body,
                                headers={"Content-Type": "text/csv", "Accept": "application/json;verbose=true"})
        assert verbose.status_code == 200, verbose.text
        records = verbose.json()["scores"]
        assert list(records[1]) == ["score", "attribution", "attribution_high", "attribution_low"]
        np.testing.assert_allclose([r["score"] for r in records], scores, rtol=1e-6)
        np.testing.assert_allclose([r["attribution_high"] for r in records], high, atol=1e-9)
        np.testing.assert_allclose([r["attribution_low"] for r in records], low, atol=1e-9)
        assert records[1]["attribution_high"][0] > 0.9 * records[1]["score"]
        proto = requests.post(url + "/invocations", data=csv_body,
                              headers={"Content-Type": "text/csv", "Accept": "application/x-recordio-protobuf;verbose"})
        assert proto.headers["Content-Type"] == "application/x-recordio-protobuf"
        assert len(decode_label_records(proto.content)[2]["attribution_low"]) == 3


def test_inspect_exports_the_trees(trained: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "common.entrypoint", "inspect"], capture_output=True, text=True,
                            env=entrypoint_env("rcf", trained), timeout=60)
    exported = json.loads(result.stdout)
    assert len(exported["roots"]) == 50 and len(exported["points"][0]) == 3
