"""LightGBM and CatBoost through `python -m common.entrypoint` exactly as the images run them."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.integration.helpers import free_port_run, serving, train, train_hosts
from tests.unit.test_lightgbm import tabular, write_csv
from tools.local import entrypoint_env, write_job

LGB_FAST = {"num_boost_round": "20"}
CB_FAST = {"iterations": "40", "learning_rate": "0.2", "verbose": "10"}
ROW, ROWS = "0.5,2,0.1,0.2", "0.5,2,0.1,0.2\n-1,0,0,0\n"


def _job(tmp: Path, algorithm: str, hp: dict[str, str], classes: int, validation: bool = False,
         n: int = 600) -> Path:
    """A train channel with categorical_index.json (column 2), optionally a validation channel."""
    x, y = tabular(n=n, classes=classes)
    tmp.mkdir(parents=True, exist_ok=True)
    index = tmp / "categorical_index.json"
    index.write_text('{"cat_index_list": [2]}')
    channel = "train" if algorithm == "lightgbm" else "training"
    channels = {channel: ([write_csv(tmp / "train.csv", x[:500], y[:500]), index], "text/csv")}
    if validation:
        channels["validation"] = ([write_csv(tmp / "validation.csv", x[500:], y[500:])], "text/csv")
    base = tmp / "ml"
    write_job(base, hp, channels)
    return base


def _trained(tmp: Path, algorithm: str, hp: dict[str, str], classes: int, **kwargs: object) -> tuple[Path, str]:
    base = _job(tmp, algorithm, hp, classes, **kwargs)  # type: ignore[arg-type]
    result = train(algorithm, base)
    assert result.returncode == 0, result.stdout + result.stderr
    return base, result.stdout


def _post(url: str, body: str, content_type: str = "text/csv", accept: str | None = None) -> requests.Response:
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    return requests.post(url + "/invocations", data=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def lgb_binary(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return _trained(tmp_path_factory.mktemp("lgb"), "lightgbm", LGB_FAST, classes=2)


@pytest.fixture(scope="module")
def cb_binary(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return _trained(tmp_path_factory.mktemp("cb"), "catboost", CB_FAST, classes=2)


def test_lightgbm_holdout_metric_lines_and_the_guides_regex(lgb_binary: tuple[Path, str]) -> None:
    base, stdout = lgb_binary
    assert "No validation data: 100 of the training rows are held out (20 %, seed 200)." in stdout
    rounds = [line for line in stdout.splitlines() if re.match(r"\[\d+\]\t", line)]
    assert len(rounds) == 21 and rounds[0].startswith("[1]\ttrain's binary_logloss: ")  # 20 rounds + best
    assert "\tval's binary_logloss: " in rounds[0]
    values = [float(v) for v in re.findall(r"binary_logloss: ([0-9\.]+)", stdout)]
    assert len(values) == 42 and values[-1] < values[0]
    assert "Did not meet early stopping. Best iteration is:" in stdout
    info = json.loads((base / "model" / "__models_info__.json").read_text())
    assert info["is_trained_on_input_data"] and info["categorical_features"] == [1]


def test_lightgbm_serves_json_jsonlines_and_clear_errors(lgb_binary: tuple[Path, str]) -> None:
    base, _ = lgb_binary
    with serving("lightgbm", base, workers=2) as (url, _):
        plain = _post(url, ROWS)
        assert plain.headers["Content-Type"] == "application/json"
        assert list(plain.json()) == ["probabilities-1d", "probabilities"]
        verbose = _post(url, ROWS, accept="application/json;verbose").json()
        assert verbose["predicted_label"] == [1, 0] and len(verbose["probabilities"][0]) == 2
        assert verbose["probabilities"] == plain.json()["probabilities"]
        lines = _post(url, ROWS, accept="application/jsonlines;verbose").text.splitlines()
        assert [json.loads(line)["probabilities"] for line in lines] == verbose["probabilities"]
        wrong = _post(url, "1,2,3")
        assert (wrong.status_code, wrong.text) == (400, "Row 1 of request has 3 features but the model's feature "
                                                        "count is 4.\n")
        text = _post(url, "0.5,2,0.1,0.2\n0.5,abc,1,2\n")
        assert (text.status_code, text.text) == (400, "Line 2 of request, column 2: 'abc' is not a number.\n")
        as_json = _post(url, json.dumps({"instances": [{"features": [float(v) for v in ROW.split(",")]}]}),
                        "application/json")
        assert as_json.json()["probabilities"] == _post(url, ROW).json()["probabilities"]
        assert _post(url, ROW, "application/x-recordio-protobuf").status_code == 415
        as_csv = _post(url, ROW, accept="text/csv;verbose")  # the probabilities once, then the label
        one = _post(url, ROW, accept="application/json;verbose").json()
        assert [float(v) for v in as_csv.text.split(",")] == [*one["probabilities"][0], one["predicted_label"][0]]
        refused = _post(url, ROW, accept="text/libsvm")
        assert refused.status_code == 406 and refused.text.startswith("Accept 'text/libsvm' is not supported")


def test_lightgbm_inspect_prints_importances_and_the_dump(lgb_binary: tuple[Path, str]) -> None:
    base, _ = lgb_binary
    result = subprocess.run([sys.executable, "-m", "common.entrypoint", "inspect"], capture_output=True, text=True,
                            env=entrypoint_env("lightgbm", base), timeout=60)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert len(printed["feature_importance_gain"]) == 4 and json.loads(printed["model_dump"])["num_class"] == 1


def test_lightgbm_multiclass_validation_channel_early_stopping(tmp_path: Path) -> None:
    hp = {"num_boost_round": "300", "learning_rate": "0.5", "early_stopping_rounds": "3", "metric": "multi_error"}
    base, stdout = _trained(tmp_path, "lightgbm", hp, classes=3, validation=True)
    assert "Training until validation scores don't improve for 3 rounds" in stdout
    assert "Early stopping, best iteration is:" in stdout
    best = int(re.search(r"Early stopping, best iteration is:\n\[(\d+)\]", stdout).group(1))
    assert json.loads((base / "model" / "__models_info__.json").read_text())["best_iteration"] == best
    assert re.findall(r"val's multi_error: ([0-9\.]+)", stdout)


def test_lightgbm_regression_single_channel_layout(tmp_path: Path) -> None:
    x, y = tabular(classes=1)
    base = tmp_path / "ml"
    write_job(base, LGB_FAST, {"training": ([], "text/csv")})
    channel = base / "input" / "data" / "training"
    write_csv(channel / "train" / "part-1.csv", x[:500], y[:500])
    write_csv(channel / "validation" / "part-1.csv", x[500:], y[500:])
    result = train("lightgbm", base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No validation data" not in result.stdout and re.search(r"val's rmse: ([0-9\.]+)", result.stdout)
    with serving("lightgbm", base) as (url, _):
        assert len(_post(url, ROWS, accept="application/json;verbose").json()["prediction"]) == 2


def test_lightgbm_two_hosts_over_its_own_network(tmp_path: Path) -> None:
    x, y = tabular(n=1200, classes=2)
    hosts = ["algo-1", "algo-2"]
    for rank, host in enumerate(hosts):
        shard = write_csv(tmp_path / f"shard-{rank}" / "train.csv", x[rank::2], y[rank::2])
        write_job(tmp_path / host, {**LGB_FAST, "early_stopping_rounds": "5"}, {"train": ([shard], "text/csv")},
                  host=host, hosts=hosts, distribution="ShardedByS3Key")
    results = train_hosts("lightgbm", [tmp_path / host for host in hosts], hosts,
                          {"ALGO_LIGHTGBM_PORT": str(free_port_run(len(hosts)))})
    outputs = [r.stdout for r in results]
    assert [r.returncode for r in results] == [0, 0], outputs
    for rank, out in enumerate(outputs):  # one LightGBM network: each host sees both shards' 960 rows
        assert f"[LightGBM] [Info] Local rank: {rank}, total number of machines: 2" in out
        assert "[LightGBM] [Info] Number of positive: 464, number of negative: 496" in out
    assert all("Disable early stopping feature in multi-instance training" in out for out in outputs)
    assert (tmp_path / "algo-1" / "model" / "model.txt").exists()
    assert not (tmp_path / "algo-2" / "model").exists()


def test_catboost_bestTest_line_and_serving(cb_binary: tuple[Path, str]) -> None:
    base, stdout = cb_binary
    best = [line for line in stdout.splitlines() if re.search(r"bestTest = ([0-9\.]+)", line)]
    assert len(best) == 1 and "bestIteration = " in stdout
    assert (base / "model" / "model").read_bytes()[:4] == b"CBM1"  # CatBoost's native binary format
    with serving("catboost", base, workers=2) as (url, _):
        plain = _post(url, ROWS).json()
        assert list(plain) == ["probabilities"] and len(plain["probabilities"]) == 2
        verbose = _post(url, ROWS, accept="application/json;verbose").json()
        assert verbose["predicted_label"] == [1, 0]
        lines = _post(url, ROWS, accept="application/jsonlines").text.splitlines()
        assert [json.loads(line) for line in lines] == [{"probabilities": p} for p in plain["probabilities"]]
        missing = _post(url, "0.5,,0.1,0.2")
        assert (missing.status_code, missing.text) == (
            400, "Row 1 of request, column 2 is categorical and must hold an integer; got an empty cell.\n")


def test_catboost_multiclass_regression_and_early_stopping(tmp_path: Path) -> None:
    hp = {"iterations": "400", "learning_rate": "0.5", "early_stopping_rounds": "3", "verbose": "1"}
    _, stdout = _trained(tmp_path / "m", "catboost", hp, classes=3, validation=True)
    assert "Stopped by overfitting detector  (3 iterations wait)" in stdout
    assert re.findall(r"bestTest = ([0-9\.]+)", stdout)
    base, _ = _trained(tmp_path / "r", "catboost", CB_FAST, classes=1)
    with serving("catboost", base) as (url, _):
        assert len(_post(url, ROWS).json()["prediction"]) == 2


def test_catboost_refuses_several_hosts(tmp_path: Path) -> None:
    hosts = ["algo-1", "algo-2"]
    x, y = tabular(classes=2)
    for host in hosts:
        write_job(tmp_path / host, CB_FAST, {"training": ([write_csv(tmp_path / "t.csv", x, y)], "text/csv")},
                  host=host, hosts=hosts)
    results = train_hosts("catboost", [tmp_path / host for host in hosts], hosts, timeout=120)
    assert [r.returncode for r in results] == [1, 1], [r.stdout for r in results]
    assert (tmp_path / "algo-1" / "output" / "failure").read_text() == (
        "ClientError: CatBoost trains on one instance only (CPU), but this job has 2 hosts (algo-1, algo-2); "
        "set instance_count=1.")


@pytest.mark.parametrize("algorithm", ["lightgbm", "catboost"])
def test_bad_training_data_fails_with_one_sentence(tmp_path: Path, algorithm: str) -> None:
    base = _job(tmp_path, algorithm, {}, classes=2)
    channel = "train" if algorithm == "lightgbm" else "training"
    (base / "input" / "data" / channel / "train.csv").write_text("1,0.5,2,0.1,0.2\n0,oops,1,0,0\n")
    result = train(algorithm, base)
    assert result.returncode == 1
    assert (base / "output" / "failure").read_text() == \
        "ClientError: Line 2 of train.csv, column 2: 'oops' is not a number."
    shutil.rmtree(base / "output")


def test_lightgbm_port_taken_on_one_host_fails_every_host_with_the_port(tmp_path: Path) -> None:
    x, y = tabular(n=600, classes=2)
    hosts = ["algo-1", "algo-2"]
    for rank, host in enumerate(hosts):
        shard = write_csv(tmp_path / f"shard-{rank}" / "train.csv", x[rank::2], y[rank::2])
        write_job(tmp_path / host, LGB_FAST, {"train": ([shard], "text/csv")}, host=host, hosts=hosts,
                  distribution="ShardedByS3Key")
    first = free_port_run(len(hosts))
    with socket.socket() as stranger:  # something else already listens on algo-2's port
        stranger.bind(("127.0.0.1", first + 1))
        stranger.listen()
        results = train_hosts("lightgbm", [tmp_path / host for host in hosts], hosts,
                              {"ALGO_LIGHTGBM_PORT": str(first)})
    assert [r.returncode for r in results] == [1, 1], [r.stdout for r in results]
    for out in (r.stdout for r in results):
        assert f"algo-2 cannot listen on port {first + 1} (Address already in use)" in out
        assert "Set ALGO_LIGHTGBM_PORT to a free range." in out
