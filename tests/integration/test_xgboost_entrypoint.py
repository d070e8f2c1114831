"""XGBoost through `python -m common.entrypoint` as the image runs it: seed 000's flow, formats, hosts, serving."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_digits

from common.data.recordio_writer import encode_dense
from tests.integration.helpers import serving, train, train_hosts
from tests.responses import decode_label_records
from tools.local import entrypoint_env, feed_pipes, write_job

SEED_000 = {"max_depth": "5", "eta": "0.2", "gamma": "4", "min_child_weight": "6", "silent": "0",
            "objective": "multi:softmax", "num_class": "10", "num_round": "10"}
DIGITS_X, DIGITS_Y = load_digits(return_X_y=True)
CANCER_X, CANCER_Y = load_breast_cancer(return_X_y=True)
LINE = re.compile(r"^\[(\d+)\]((?:\t(?:train|validation)-[\w@.-]+:-?\d+\.\d{5})+)$")
ONE_HOST = {"OMP_NUM_THREADS": "1"}  # several local "hosts" share 2 cores: no OpenMP spinning


def to_libsvm(path: Path, labels: np.ndarray, values: np.ndarray) -> Path:
    """Seed 000's writer: `label i+1:value ...`, 1-based indices."""
    path.write_text("".join("{} {}\n".format(label, " ".join(f"{i + 1}:{el}" for i, el in enumerate(vec)))
                            for label, vec in zip(labels.tolist(), values.tolist())))
    return path


def rounds(stdout: str) -> list[dict[str, float]]:
    """The evaluation lines: per round {"train-mlogloss": 0.1, ...}; every such line must be exact."""
    out = []
    for line in stdout.splitlines():
        if re.match(r"\[\d+\]", line):
            match = LINE.match(line)
            assert match, repr(line)
            assert int(match.group(1)) == len(out) + (out[0]["round"] if out else int(match.group(1)))
            out.append({"round": int(match.group(1)),
                        **{k: float(v) for k, v in (p.split(":") for p in match.group(2).split("\t")[1:])}})
    return out


@pytest.fixture(scope="module")
def seed000(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Seed 000's data: 5 libsvm part files each for train and validation, 1-based indices."""
    root = tmp_path_factory.mktemp("seed000")
    train_x, train_y, val_x, val_y = DIGITS_X[:1400], DIGITS_Y[:1400], DIGITS_X[1400:], DIGITS_Y[1400:]
    parts = [to_libsvm(root / f"train-examples{i}", y, x)
             for i, (x, y) in enumerate(zip(np.array_split(train_x, 5), np.array_split(train_y, 5)))]
    val_parts = [to_libsvm(root / f"validation-examples{i}", y, x)
                 for i, (x, y) in enumerate(zip(np.array_split(val_x, 5), np.array_split(val_y, 5)))]
    base = root / "single"
    write_job(base, SEED_000, {"train": (parts, "libsvm"), "validation": (val_parts, "libsvm")})
    result = train("xgboost", base, {"SM_PROGRESS_INTERVAL_S": "0"})  # a progress line after every round
    assert result.returncode == 0, result.stdout + result.stderr
    return {"root": root, "parts": parts, "val_parts": val_parts, "base": base, "stdout": result.stdout}


def test_seed_000_single_instance_metrics_and_artifact(seed000: dict) -> None:
    evaluated = rounds(seed000["stdout"])
    assert [r["round"] for r in evaluated] == list(range(10))
    assert set(evaluated[0]) == {"round", "train-mlogloss", "validation-mlogloss"}
    lines = seed000["stdout"].splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("[3]\t"))
    speed = r"(?:[\d,.]+ rounds/s|[\d.]+ s each)"
    assert re.search(rf"\] boosting: 4/10 rounds \(40\.0 %\), {speed}, elapsed [\d.]+ s, ETA ", lines[at + 1])
    assert re.search(rf"\] boosting: 10 rounds in [\d.]+ s, {speed}$", seed000["stdout"], re.M)
    assert "Metrics: on each round's line [n] train-<metric>:<value>" in seed000["stdout"]
    assert "'silent' is deprecated and ignored" in seed000["stdout"]
    booster = xgb.Booster()
    booster.load_model(str(seed000["base"] / "model" / "xgboost-model"))  # what users do with the artifact
    assert booster.num_boosted_rounds() == 10 and booster.num_features() == 65  # 1-based: feature 0 unused
    described = json.loads(subprocess.run([sys.executable, "-m", "common.entrypoint", "describe"], text=True,
                                          capture_output=True, env=entrypoint_env("xgboost", seed000["base"])).stdout)
    regex = next(d["Regex"] for d in described["metric_definitions"] if d["Name"] == "validation:mlogloss")
    last = [line for line in seed000["stdout"].splitlines() if line.startswith("[9]")][0]
    assert float(re.match(regex, last.replace("\t", "#011")).group(1)) == evaluated[-1]["validation-mlogloss"]


def test_seed_000_client_code_against_the_1_0_1_version(seed000: dict) -> None:
    payload = "".join(p.read_text() for p in seed000["val_parts"]).rstrip("\n")
    labels = [float(line.split(" ")[0]) for line in payload.split("\n")]
    test_data = payload.split("\n")
    with serving("xgboost", seed000["base"], extra_env={"SAGEMAKER_EMULATED_VERSION": "1.0-1"}) as (url, _):

        def do_predict(data: list[str], content_type: str) -> list[float]:  # seed 000's client, minus boto3
            response = requests.post(url + "/invocations", data="\n".join(data), headers={"Content-Type": content_type})
            result = response.content.decode("ascii")
            return [float(num) for num in result.split(",")]

        single = do_predict(test_data[:1], "text/x-libsvm")
        preds = [p for offset in range(0, len(test_data), 100) for p in do_predict(test_data[offset:offset + 100],
                                                                                   "text/x-libsvm")]
    assert single == preds[:1] and len(preds) == len(labels)
    assert np.mean(np.array(preds) != np.array(labels)) < 0.2


def test_seed_000_two_instances_sharded_by_s3_key(seed000: dict) -> None:
    root, hosts = seed000["root"], ["algo-1", "algo-2"]
    for rank, host in enumerate(hosts):  # 5 files on 2 instances: 3 + 2, as the seed says
        write_job(root / host, SEED_000, {"train": (seed000["parts"][rank::2], "libsvm"),
                                          "validation": (seed000["val_parts"][rank::2], "libsvm")},
                  host=host, hosts=hosts, distribution="ShardedByS3Key")
    results = train_hosts("xgboost", [root / host for host in hosts], hosts, ONE_HOST)
    outputs = [r.stdout for r in results]
    assert [r.returncode for r in results] == [0, 0], outputs
    assert len(rounds(outputs[0])) == 10 and rounds(outputs[1]) == []  # the first host prints, alone
    assert not (root / "algo-2" / "model" / "xgboost-model").exists()
    models = []
    for base in (root / "algo-1", seed000["base"]):
        booster = xgb.Booster()
        booster.load_model(str(base / "model" / "xgboost-model"))
        models.append(booster.predict(xgb.DMatrix(np.c_[np.zeros(len(DIGITS_X)), DIGITS_X])))
    assert np.mean(models[0] == models[1]) > 0.97  # same data, summed over hosts: (nearly) the same model


@pytest.fixture(scope="module")
def cancer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Binary CSV with csv_weights, a validation channel, metric list and early stopping."""
    root = tmp_path_factory.mktemp("cancer")
    weights = np.where(CANCER_Y == 1, 1.0, 2.0)
    data = np.c_[CANCER_Y, weights, CANCER_X]
    np.savetxt(root / "train.csv", data[:450], delimiter=",")
    np.savetxt(root / "validation.csv", data[450:], delimiter=",")
    base = root / "ml"
    write_job(base, {"num_round": "200", "objective": "binary:logistic", "csv_weights": "1", "eta": "0.5",
                     "eval_metric": "accuracy,f1,logloss", "early_stopping_rounds": "3"},
              {"train": ([root / "train.csv"], "text/csv"), "validation": ([root / "validation.csv"], "csv")})
    result = train("xgboost", base)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"root": root, "base": base, "stdout": result.stdout}


def test_csv_weights_metric_list_and_early_stopping_cut_the_model(cancer: dict) -> None:
    evaluated = rounds(cancer["stdout"])
    assert list(evaluated[0]) == ["round", "train-logloss", "train-accuracy", "train-f1", "validation-logloss",
                                  "validation-accuracy", "validation-f1"]  # XGBoost's first, then the container's
    losses = [r["validation-logloss"] for r in evaluated]
    best = int(np.argmin(losses))
    assert len(evaluated) == best + 4 < 200  # stopped 3 rounds after the best logloss
    booster = xgb.Booster()
    booster.load_model(str(cancer["base"] / "model" / "xgboost-model"))
    assert booster.num_boosted_rounds() == best + 1 and booster.num_features() == 30  # weight column not a feature
    assert 0.9 < evaluated[best]["validation-accuracy"] <= 1.0


@pytest.mark.parametrize(("extra", "metric"), [({"_tuning_objective_metric": "validation:auc"}, "validation-auc"),
                                               ({}, "validation-logloss")])
def test_early_stopping_on_the_tuning_metric_or_xgboosts_default(tmp_path: Path, cancer: dict, extra: dict,
                                                                  metric: str) -> None:
    base = tmp_path / "ml"
    write_job(base, {"num_round": "300", "objective": "binary:logistic", "eta": "0.8", "early_stopping_rounds": "2",
                     **extra}, {"train": ([cancer["root"] / "train.csv"], "csv"),
                                "validation": ([cancer["root"] / "validation.csv"], "csv")})
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(
        {"csv_weights": "1", **json.loads((base / "input" / "config" / "hyperparameters.json").read_text())}))
    result = train("xgboost", base)
    assert result.returncode == 0, result.stdout + result.stderr
    evaluated = rounds(result.stdout)
    values = [r[metric] for r in evaluated]
    best = int(np.argmax(values) if metric.endswith("auc") else np.argmin(values))
    assert len(evaluated) == best + 3 < 300


def test_checkpoints_resume_where_the_job_stopped(tmp_path: Path, cancer: dict) -> None:
    base = tmp_path / "ml"
    write_job(base, {"num_round": "7", "objective": "binary:logistic", "csv_weights": "1"},
              {"train": ([cancer["root"] / "train.csv"], "text/csv")})
    (base / "input" / "config" / "checkpointconfig.json").write_text(json.dumps({"LocalPath": str(base / "ckpt")}))
    first = train("xgboost", base)
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(p.name for p in (base / "ckpt").iterdir()) == [f"xgboost-checkpoint.{i}" for i in range(2, 7)]
    complete = (base / "model" / "xgboost-model").read_bytes()
    for i in (5, 6):  # as if the spot instance stopped after round 4
        (base / "ckpt" / f"xgboost-checkpoint.{i}").unlink()
    (base / "model" / "xgboost-model").unlink()
    second = train("xgboost", base)
    assert second.returncode == 0, second.stdout + second.stderr
    assert [r["round"] for r in rounds(second.stdout)] == [5, 6]
    assert "Resuming from checkpoint xgboost-checkpoint.4: 2 of 7 rounds left." in second.stdout
    models = []
    for raw in (complete, (base / "model" / "xgboost-model").read_bytes()):
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        models.append(booster.predict(xgb.DMatrix(CANCER_X)))
    np.testing.assert_allclose(models[0], models[1], rtol=1e-6)


@pytest.mark.parametrize("form", ["recordio-pipe", "parquet", "x-libsvm-pipe"])
def test_other_training_formats(tmp_path: Path, form: str) -> None:
    x, y = CANCER_X[:300].astype(np.float32), CANCER_Y[:300].astype(np.float32)
    if form == "recordio-pipe":
        path = tmp_path / "train.rec"
        path.write_bytes(encode_dense(x, y))
        content_type = "application/x-recordio-protobuf"
    elif form == "parquet":
        pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
        path = tmp_path / "train.parquet"
        pq.write_table(pa.table({"label": y, **{f"f{i}": x[:, i] for i in range(x.shape[1])}}), path)
        content_type = "application/x-parquet"
    else:
        path = tmp_path / "train.libsvm"
        to_libsvm(path, y, x)
        content_type = "text/x-libsvm"
    mode = "Pipe" if form.endswith("-pipe") else "File"
    channels = {"train": ([path], content_type)}
    base = tmp_path / "ml"
    write_job(base, {"num_round": "3", "objective": "binary:logistic", "eval_metric": "error"}, channels,
              input_mode=mode)
    if mode == "Pipe":
        feed_pipes(base, channels, epochs=1)
    result = train("xgboost", base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert rounds(result.stdout)[-1]["train-error"] < 0.1


@pytest.mark.parametrize(("hyperparameters", "content", "content_type", "failure"), [
    ({}, "label,f1\n1,2\n1,2,3\n", "text/csv", "ClientError: Line 3 of train/train has 3 fields but earlier "
                                                "lines have 2; every row needs the same columns."),
    ({}, "1,2,3\n0,1,1\n", None, "ClientError: Line 1 of train/train: label '1,2,3' is not a number (or "
                                 "number:weight): this looks like CSV, but the channel is read as libsvm, which is "
                                 "also what a channel without ContentType means; set ContentType to text/csv."),
    ({"objective": "multi:softmax", "num_class": "3"}, "0 0:1\n3 0:2\n", "libsvm",
     "ClientError: The label 3 in row 2 of train/train is not a class: with num_class=3 labels must be whole "
     "numbers from 0 to 2."),
    ({"num_roun": "3", "objective": "multi:softmax"}, "0 0:1\n", "libsvm",
     "ClientError: Hyperparameter 'num_roun' is not recognised; did you mean 'num_round'? Hyperparameter "
     "'num_round' is required: must be an integer in the range [1, inf)."),
])
def test_clear_training_errors(tmp_path: Path, hyperparameters: dict, content: str, content_type: str | None,
                               failure: str) -> None:
    (tmp_path / "train").write_text(content)
    base = tmp_path / "ml"
    write_job(base, {"num_round": "2", **hyperparameters}, {"train": ([tmp_path / "train"], content_type)})
    if "num_roun" in hyperparameters:
        (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    result = train("xgboost", base)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (base / "output" / "failure").read_text() == failure


def test_serving_every_content_type_accept_and_error(seed000: dict) -> None:
    rows = DIGITS_X[1400:1403]
    libsvm = "\n".join("{} {}".format(int(y), " ".join(f"{i + 1}:{v}" for i, v in enumerate(r)))
                       for y, r in zip(DIGITS_Y[1400:1403], rows))
    dense = np.c_[np.zeros(3), rows]  # the model's 65 columns, feature 0 unused
    bodies = {"text/libsvm": libsvm, "text/x-libsvm": libsvm, "libsvm": libsvm,
              "text/csv": "\n".join(",".join(repr(float(v)) for v in r) for r in dense),
              "application/x-recordio-protobuf": encode_dense(dense.astype(np.float32)),
              "application/json": json.dumps({"instances": [{"features": r.tolist()} for r in dense]}),
              "application/jsonlines": "\n".join(json.dumps({"features": r.tolist()}) for r in dense)}
    with serving("xgboost", seed000["base"]) as (url, _):
        def post(body: object, content_type: str, accept: str | None = None) -> requests.Response:
            headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
            return requests.post(url + "/invocations", data=body, headers=headers)

        expected = post(bodies["text/csv"], "text/csv")
        assert expected.headers["Content-Type"].startswith("text/csv") and expected.text.count("\n") == 3
        labels = [float(v) for v in expected.text.split()]
        for content_type, body in bodies.items():
            assert post(body, content_type).text == expected.text, content_type
        assert post(bodies["text/csv"], "text/csv", "*/*").text == expected.text
        assert post(bodies["text/csv"], "text/csv", "application/json").json() == {
            "predictions": [{"score": v} for v in labels]}
        assert post(bodies["text/csv"], "text/csv", "application/jsonlines").text == "".join(
            json.dumps({"score": v}) + "\n" for v in labels)
        proto = post(bodies["text/csv"], "text/csv", "application/x-recordio-protobuf")
        assert [r["score"] for r in decode_label_records(proto.content)] == [[v] for v in labels]
        assert post(bodies["text/csv"], "application/x-parquet").status_code == 415
        assert post(bodies["text/csv"], "text/csv", "text/html").status_code == 406
        with_label = "\n".join(",".join(repr(float(v)) for v in [7, *r]) for r in dense)
        too_many = post(with_label, "text/csv")
        assert too_many.status_code == 400 and "is the label column still in?" in too_many.text
        assert post("1,2,3", "text/csv").status_code == 400
        header = post("a,b,c\n1,2,3", "text/csv")
        assert header.status_code == 400 and "looks like a header" in header.text


def test_selectable_output_and_a_pickled_model(cancer: dict, tmp_path: Path) -> None:
    rows = "\n".join(",".join(repr(float(v)) for v in r) for r in CANCER_X[:2])
    env = {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label, probabilities"}
    with serving("xgboost", cancer["base"], extra_env=env) as (url, _):
        answer = requests.post(url + "/invocations", data=rows, headers={"Content-Type": "text/csv",
                                                                          "Accept": "application/json"}).json()
        csv = requests.post(url + "/invocations", data=rows, headers={"Content-Type": "text/csv"}).text
    first = answer["predictions"][0]
    assert list(first) == ["predicted_label", "probabilities"] and first["predicted_label"] in (0, 1)
    assert first["probabilities"][0] + first["probabilities"][1] == pytest.approx(1.0)
    assert csv.split("\n")[0] == f'{first["predicted_label"]},"{first["probabilities"]}"'
    import pickle

    booster = xgb.Booster()
    booster.load_model(str(cancer["base"] / "model" / "xgboost-model"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "xgboost-model").write_bytes(pickle.dumps(booster))
    command = [sys.executable, "-c",
               "from common.serving.app import create_app; from algorithms.xgboost import ALGORITHM; "
               f"import pathlib; app = create_app(ALGORITHM, pathlib.Path({str(tmp_path / 'model')!r})).test_client(); "
               "print(app.get('/ping').status_code, app.post('/invocations', data='1,2', content_type='text/csv')"
               ".status_code)"]
    loaded = subprocess.run(command, capture_output=True, text=True, env=entrypoint_env("xgboost", tmp_path))
    assert loaded.stdout.rstrip().endswith("200 400"), loaded.stdout  # loaded; 400: the row has 2 features
    refused = subprocess.run(command, capture_output=True, text=True, env={
        **entrypoint_env("xgboost", tmp_path), "SAGEMAKER_XGBOOST_ALLOW_PICKLE": "false"})
    assert refused.stdout.rstrip().endswith("500 503")  # /ping says the model is not loaded
    assert "is a Python pickle" in refused.stderr and "SAGEMAKER_XGBOOST_ALLOW_PICKLE=false refuses" in refused.stderr
