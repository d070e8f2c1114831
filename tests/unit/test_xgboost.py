"""XGBoost image: hyperparameters, metric lines and values, checkpoints, libsvm parsing, responses, model files."""

from __future__ import annotations

import io
import json
import logging
import pickle
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from algorithms.xgboost import inference
from algorithms.xgboost.algorithm import XGBoost
from algorithms.xgboost.checkpointing import XGBoostCheckpoints
from algorithms.xgboost.hyperparameters import XGBoostHyperparameters
from algorithms.xgboost.metrics import classification_metric, definitions, format_line, regression_metric
from common.cluster import xgboost_backend
from common.cluster.collective import Cluster, ClusterError, Collective
from common.cluster.xgboost_backend import _XGBoostCollective, _XGBoostThread
from common.data.libsvm_reader import LibsvmReader
from common.errors import UserError
from common.hyperparameters import parse_hyperparameters
from common.paths import Paths
from common.serving.app import invoke
from common.training import run_training
from tools.local import write_job

SEED_000 = {"max_depth": "5", "eta": "0.2", "gamma": "4", "min_child_weight": "6", "silent": "0",
            "objective": "multi:softmax", "num_class": "10", "num_round": "10"}


def parse(**raw: str) -> XGBoostHyperparameters:
    return parse_hyperparameters(XGBoostHyperparameters, raw)


# ---- hyperparameters ------------------------------------------------------------------------------

def test_seed_000_hyperparameters_train_with_silent_dropped(caplog: pytest.LogCaptureFixture) -> None:
    hp = parse(**SEED_000)
    assert "'silent' is deprecated and ignored" in caplog.text
    assert hp.params() == {"max_depth": 5, "eta": 0.2, "gamma": 4.0, "min_child_weight": 6.0,
                           "objective": "multi:softmax", "num_class": 10}


def test_aliases_quoted_values_and_xgboost_spelling() -> None:
    hp = parse(num_round="3", learning_rate="0.1", reg_lambda="2", reg_alpha="0.5", min_split_loss="1",
               objective='"reg:squarederror"', eval_metric="rmse,mae", csv_weights="1", early_stopping_rounds="4")
    assert hp.params() == {"eta": 0.1, "lambda": 2.0, "alpha": 0.5, "gamma": 1.0, "objective": "reg:squarederror"}
    assert hp.eval_metric == ("rmse", "mae")
    assert parse(num_round="3", **{"lambda": "3"}).params() == {"lambda": 3.0}
    with pytest.raises(UserError, match="'lambda' repeats 'reg_lambda'"):
        parse(num_round="3", reg_lambda="1", **{"lambda": "2"})


def test_structured_values_parse_safely() -> None:
    hp = parse(num_round="1", monotone_constraints="(0,1,-1)", interaction_constraints="[[1,2],[3,4,5]]",
               tree_method="hist", eval_metric='["error@0.7", "ndcg@3-", "accuracy"]', updater="grow_colmaker,prune")
    assert hp.params()["monotone_constraints"] == "(0,1,-1)"
    assert hp.params()["interaction_constraints"] == "[[1,2],[3,4,5]]"
    assert hp.params()["updater"] == "grow_colmaker,prune"
    assert hp.eval_metric == ("error@0.7", "ndcg@3-", "accuracy")
    with pytest.raises(UserError, match="'monotone_constraints' has invalid value '__import__"):
        parse(num_round="1", monotone_constraints="__import__('os')")


@pytest.mark.parametrize(("raw", "message"), [
    ({"objective": "multi:softprob"}, "Hyperparameter 'num_class' is required when objective is 'multi:softprob'."),
    ({"eval_metric": "auc"}, "eval_metric 'auc' needs a binary: or rank: objective, not 'reg:squarederror'."),
    ({"eval_metric": "aft-nloglik", "objective": "binary:logistic"},
     "eval_metric 'aft-nloglik' needs objective survival:aft, not 'binary:logistic'."),
    ({"monotone_constraints": "(1,-1)", "tree_method": "approx"},
     "monotone_constraints need tree_method exact or hist, not 'approx'."),
    ({"booster": "gblinear", "updater": "shotgun,coord_descent"},
     "With booster=gblinear, updater must be exactly one of shotgun, coord_descent."),
    ({"updater": "grow_colmaker,grow_histmaker"}, "updater may contain at most one tree-building updater"),
    ({"use_dask_gpu_training": "true"}, "use_dask_gpu_training=true needs GPUs and Dask"),
    ({"objective": "aft_loss_distribution"}, "objective 'aft_loss_distribution' is a hyperparameter"),
])
def test_cross_field_rules(raw: dict[str, str], message: str) -> None:
    with pytest.raises(UserError) as caught:
        parse(num_round="1", **raw)
    assert caught.value.message.startswith(message)


def test_obsolete_and_gpu_parameters_are_accepted_but_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    params = parse(num_round="1", single_precision_histogram="true", predictor="cpu_predictor",
                   tree_method="gpu_hist", objective="reg:linear").params()
    assert params == {"tree_method": "hist", "objective": "reg:squarederror"}
    assert "'predictor' has no effect" in caplog.text and "gpu_hist needs a GPU" in caplog.text


# ---- metric lines, regexes and container-computed values -----------------------------------------

def test_line_is_xgboosts_format_and_every_published_regex_matches_it() -> None:
    line = format_line(7, [("train", "rmse", 0.123456), ("validation", "rmse", 2.5), ("validation", "f1", 0.5)])
    assert line == "[7]\ttrain-rmse:0.12346\tvalidation-rmse:2.50000\tvalidation-f1:0.50000"
    published = {m.name: m for m in definitions()}
    assert len(published) <= 40 and len({d["Name"] for d in XGBoost.describe()["metric_definitions"]}) <= 40
    assert published["validation:rmse"].to_json()["Type"] == "Minimize"
    assert published["validation:f1"].to_json()["Type"] == "Maximize"
    for text in (line, line.replace("\t", "#011")):  # as printed, and as CloudWatch shows a TAB
        assert re.match(published["validation:rmse"].regex, text).group(1) == "2.50000"
        assert re.match(published["train:rmse"].regex, text).group(1) == "0.12346"
        assert re.match(published["validation:f1"].regex, text).group(1) == "0.50000"
        assert re.match(published["validation:mse"].regex, text) is None
    sample = published["validation:auc"]
    assert re.match(sample.regex, sample.line("algo-1", 0.75, 3)).group(1) == "0.75"


def test_classification_metrics_match_scikit_learn() -> None:
    from sklearn import metrics as sk

    rng = np.random.default_rng(0)
    for classes in (2, 4):
        truth, predicted = rng.integers(0, classes, 300), rng.integers(0, classes, 300)
        predicted[:5] = 0  # some overlap either way
        confusion = np.bincount(truth * classes + predicted, minlength=classes * classes).reshape(classes, classes)
        expected = {"accuracy": sk.accuracy_score(truth, predicted),
                    "balanced_accuracy": sk.balanced_accuracy_score(truth, predicted),
                    "f1": sk.f1_score(truth, predicted, average="macro"),
                    "precision_macro": sk.precision_score(truth, predicted, average="macro"),
                    "recall_micro": sk.recall_score(truth, predicted, average="micro")}
        if classes == 2:
            expected.update(f1_binary=sk.f1_score(truth, predicted), precision=sk.precision_score(truth, predicted),
                            recall=sk.recall_score(truth, predicted))
        for name, value in expected.items():
            assert classification_metric(name, confusion.astype(float)) == pytest.approx(value), name
    y, p = rng.normal(size=50), rng.normal(size=50)
    stats = np.array([50, y.sum(), (y ** 2).sum(), ((p - y) ** 2).sum()])
    assert regression_metric("r2", stats) == pytest.approx(sk.r2_score(y, p))
    assert regression_metric("mse", stats) == pytest.approx(sk.mean_squared_error(y, p))


# ---- checkpoints ------------------------------------------------------------------------------------

def test_checkpoints_keep_five_and_never_delete_a_file_being_uploaded(tmp_path: Path) -> None:
    store = XGBoostCheckpoints(tmp_path)
    assert store.latest() is None
    (tmp_path / "xgboost-checkpoint.0.sagemaker-uploading").touch()
    for number in range(8):
        store.save(number, f"model {number}".encode())
    assert store.rounds() == [0, 3, 4, 5, 6, 7]
    assert store.latest() == (7, b"model 7")
    assert not list(tmp_path.glob("*.sagemaker-ignore"))
    (tmp_path / "xgboost-checkpoint.0.sagemaker-uploaded").touch()
    store.save(8, b"model 8")
    assert store.rounds() == [4, 5, 6, 7, 8]


# ---- libsvm reader (common) ---------------------------------------------------------------------------

def test_libsvm_weights_qid_comments_and_streamed_blocks() -> None:
    body = b"1:2.5 qid:3 0:1 5:2 # comment\n\n0 qid:3 2:1e-3\r\n" * 40
    whole = LibsvmReader().parse(body)
    assert whole.weights.tolist()[:2] == [2.5, 1.0] and whole.qid.tolist()[:2] == [3, 3]
    assert whole.labels[:2, 0].tolist() == [1.0, 0.0] and whole.dense()[1, 2] == pytest.approx(1e-3)
    parts = list(LibsvmReader(chunk_bytes=50).batches(io.BytesIO(body), "train/x", 7))
    assert sum(len(p) for p in parts) == 80 and max(len(p) for p in parts) <= 7
    assert parts[1].first_row == 1 + len(parts[0])
    with pytest.raises(UserError, match="Line 2 of request: label '1,2' is not a number"):
        LibsvmReader().parse(b"1 0:1\n1,2\n")


# ---- responses ------------------------------------------------------------------------------------------

P = np.array([0.43861907720565796], np.float32)


def test_selectable_output_encodings_as_the_spec_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    from common.data.registry import encode

    keys = ["predicted_label", "probabilities"]
    columns = inference.selectable_columns(P, "binary:logistic", 0, keys)
    layout = inference.response_layout(keys)
    body = encode(columns, "application/json", layout)
    assert body == (b'{"predictions": [{"predicted_label": 0, "probabilities": '
                    b'[0.561380922794342, 0.43861907720565796]}]}')
    assert encode(columns, "application/jsonlines", layout) == (
        b'{"predicted_label": 0, "probabilities": [0.561380922794342, 0.43861907720565796]}\n')
    assert encode(columns, "text/csv", layout) == (
        b'0,"[0.561380922794342, 0.43861907720565796]"')
    monkeypatch.setenv("SAGEMAKER_BATCH", "true")
    assert encode(columns, "text/csv", inference.response_layout(keys[::-1])) == (
        b'"[0.561380922794342, 0.43861907720565796]",0\n')


def test_selectable_keys_per_objective() -> None:
    probs = np.array([[0.1, 0.7, 0.2]], np.float32)
    cols = inference.selectable_columns(probs, "multi:softprob", 3, list(inference.KEYS))
    assert cols["predicted_label"].tolist() == [1] and cols["labels"].tolist() == [[0, 1, 2]]
    assert cols["probability"].tolist() == pytest.approx([0.7]) and np.isnan(cols["predicted_score"][0])
    assert inference.selectable_columns(np.array([1.5], np.float32), "reg:tweedie", 0,
                                        ["predicted_score"])["predicted_score"].tolist() == [1.5]
    assert inference.selectable_columns(np.array([-0.2], np.float32), "binary:logitraw", 0,
                                        ["predicted_label", "raw_scores"])["predicted_label"].tolist() == [0]
    with pytest.raises(UserError) as caught:
        inference.selectable_columns(P, "count:poisson", 0, ["predicted_score"])
    assert caught.value.status == 500 and "count:poisson" in caught.value.message


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    out = {}
    for objective, label, extra in (("binary:logistic", x[:, 0] > 0, {}),
                                    ("multi:softprob", (x[:, 0] > 0) + (x[:, 1] > 0), {"num_class": 3}),
                                    ("multi:softmax", (x[:, 0] > 0) + (x[:, 1] > 0), {"num_class": 3})):
        booster = xgb.train({"objective": objective, **extra}, xgb.DMatrix(x, label=label.astype(float)), 5)
        folder = tmp_path_factory.mktemp(objective.replace(":", "_"))
        (folder / "xgboost-model").write_bytes(bytes(booster.save_raw("ubj")))
        out[objective] = folder
    return out


def test_default_bodies_old_csv_switch_and_batch_mode(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    model = XGBoost.load(models["binary:logistic"])
    rows = b"0.5,1,2,3\n-1,0,0,0\n"
    csv, mimetype = invoke(model, rows, "text/csv", None)
    values = [float(v) for v in csv.decode().splitlines()]
    assert mimetype == "text/csv" and csv.endswith(b"\n") and len(values) == 2
    assert json.loads(invoke(model, rows, "text/csv", "application/json")[0]) == {
        "predictions": [{"score": values[0]}, {"score": values[1]}]}
    monkeypatch.setenv("SAGEMAKER_XGBOOST_CSV_OUTPUT", "comma_joined")  # read when the model is loaded
    assert invoke(model, rows, "text/csv", "*/*")[0] == csv
    model = XGBoost.load(models["binary:logistic"])
    assert [float(v) for v in invoke(model, rows, "text/csv", "*/*")[0].decode().split(",")] == values
    monkeypatch.setenv("SAGEMAKER_BATCH", "true")
    softprob = XGBoost.load(models["multi:softprob"])
    batch = invoke(softprob, rows, "text/csv", "application/json")[0].decode()
    assert batch.endswith("]\n") and batch.startswith("[") and len(json.loads(batch.splitlines()[0])) == 3


def test_request_width_is_checked_exactly(models: dict[str, Path]) -> None:
    model = XGBoost.load(models["binary:logistic"])
    with pytest.raises(UserError) as caught:
        invoke(model, b"1,0.5,1,2,3\n", "text/csv", None)
    assert caught.value.message == ("The request has 5 features per row but the model was trained with 4 (is the "
                                    "label column still in?); send exactly 4 columns, no label.")
    with pytest.raises(UserError, match="has 3 features per row"):
        invoke(model, b"0.5,1,2\n", "text/csv", None)
    short = invoke(model, b"1 0:0.5 1:1\n", "text/libsvm", None)[0]  # libsvm rows may omit trailing features
    assert len(short.splitlines()) == 1


def test_pickled_models_load_as_aws_loads_them_unless_refused(models: dict[str, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    booster = XGBoost.load(models["binary:logistic"]).boosters[0]
    (tmp_path / "xgboost-model").write_bytes(pickle.dumps(booster, protocol=4))
    with caplog.at_level(logging.INFO):
        assert XGBoost.load(tmp_path).objective == "binary:logistic"
    assert "xgboost-model is a pickled model (SageMaker XGBoost before 1.3-1)" in caplog.text
    monkeypatch.setenv("SAGEMAKER_XGBOOST_ALLOW_PICKLE", "false")
    with pytest.raises(UserError, match="is a Python pickle .* SAGEMAKER_XGBOOST_ALLOW_PICKLE=false refuses"):
        XGBoost.load(tmp_path)


@pytest.mark.parametrize("version, comma_joined, pickled", [("1.0-1", True, True), ("1.2-1", True, True),
                                                            ("1.2-2", False, True), ("1.5-1", False, False),
                                                            (None, False, False)])
def test_an_emulated_version_has_its_csv_body_and_model_file(models: dict[str, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, version: str | None,
                                                              comma_joined: bool, pickled: bool) -> None:
    if version:
        monkeypatch.setenv("SAGEMAKER_EMULATED_VERSION", version)
    model = XGBoost.load(models["binary:logistic"])
    body = invoke(model, b"0.5,1,2,3\n-1,0,0,0\n", "text/csv", None)[0].decode()
    assert (body.count(",") == 1 and "\n" not in body) if comma_joined else body.count("\n") == 2
    model.save(tmp_path)
    raw = (tmp_path / "xgboost-model").read_bytes()
    assert raw[:1] == b"\x80" if pickled else raw[:1] == b"{"
    if pickled:
        assert pickle.loads(raw).num_features() == model.num_features  # what a notebook of that time did
    assert XGBoost.load(tmp_path).num_features == model.num_features


@pytest.mark.parametrize("version, objective, metric", [("1.0-1", "binary:logistic", "error"),
                                                      ("1.2-2", "multi:softmax", "merror"),
                                                      (None, "binary:logistic", "logloss"),
                                                      ("1.5-1", "multi:softmax", "mlogloss"),
                                                      ("1.0-1", "reg:squarederror", "rmse")])
def test_versions_before_1_3_score_classification_with_the_old_default_metric(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, version: str | None,
        objective: str, metric: str) -> None:
    if version:
        monkeypatch.setenv("SAGEMAKER_EMULATED_VERSION", version)
    rows = np.random.default_rng(0).random((60, 3))
    data = tmp_path / "train.csv"
    multi = objective.startswith("multi")
    data.write_text("\n".join(f"{int(a > 0.5) + (int(b > 0.5) if multi else 0)},{a},{b},{c}" for a, b, c in rows))
    extra = {"num_class": "3"} if multi else {}
    write_job(tmp_path / "ml", {"num_round": "2", "objective": objective, **extra}, {"train": ([data], "csv")})
    assert run_training(XGBoost, Paths(tmp_path / "ml")) == 0
    assert f"[1]\ttrain-{metric}:" in capsys.readouterr().out


def test_an_unknown_emulated_version_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from algorithms.xgboost import versions

    monkeypatch.setenv("SAGEMAKER_EMULATED_VERSION", "0.90-2")
    with pytest.raises(UserError, match=r"^SAGEMAKER_EMULATED_VERSION='0.90-2' is not an emulated version; use one "
                                        r"of: 1.0-1, 1.2-1"):
        versions.current()


def test_ensemble_votes_for_softmax(models: dict[str, Path], tmp_path: Path) -> None:
    raw = (models["multi:softmax"] / "xgboost-model").read_bytes()
    for i in range(3):
        (tmp_path / f"xgboost-model-{i}").write_bytes(raw)
    (tmp_path / ".hidden").write_text("x")
    model = XGBoost.load(tmp_path)
    single = XGBoost.load(models["multi:softmax"])
    rows = b"0.5,1,2,3\n-1,-1,0,0\n"
    assert len(model.boosters) == 3 and invoke(model, rows, "text/csv", None) == invoke(single, rows, "text/csv", None)


# ---- Collective.run (common) -------------------------------------------------------------------------

def test_run_on_one_host_just_calls() -> None:
    assert Collective().run(lambda: threading.current_thread()) is threading.current_thread()


def test_run_watchdog_counts_from_the_last_sign_of_life(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xgboost_backend, "GRACE_S", 0.0)
    collective = _XGBoostCollective(Cluster(("algo-1", "algo-2"), "algo-1"), timeout_s=0.3, thread=_XGBoostThread())

    def long_but_alive() -> str:
        for _ in range(8):  # 0.8 s in all, far past the 0.3 s deadline, but never 0.3 s silent
            time.sleep(0.1)
            collective.alive()
        return threading.current_thread().name

    assert collective.run(long_but_alive) == "xgboost-collective"
    with pytest.raises(ValueError, match="bad rows"):
        collective.run(lambda: (_ for _ in ()).throw(ValueError("bad rows")))
    with pytest.raises(ClusterError, match="after an earlier failure: ValueError: bad rows"):
        collective.run(lambda: 1)
    silent = _XGBoostCollective(Cluster(("algo-1", "algo-2"), "algo-1"), timeout_s=0.3, thread=_XGBoostThread())
    started = time.monotonic()
    with pytest.raises(ClusterError, match="made no progress for 0.3 s"):
        silent.run(lambda: time.sleep(3))
    assert time.monotonic() - started < 2.5 and silent.thread.stuck


# ---- parallel file parsing ------------------------------------------------------------------------------

def test_parallel_parsing_matches_the_streaming_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from common.data import parallel_read
    from common.data.csv_reader import CsvReader

    monkeypatch.setattr(parallel_read, "MIN_RANGE_BYTES", 64)  # many small ranges
    monkeypatch.setattr(parallel_read.os, "cpu_count", lambda: 4)
    rng = np.random.default_rng(2)
    rows = np.round(rng.normal(size=(300, 4)), 3)
    texts = ["\n".join(",".join(map(str, r)) for r in part) for part in (rows[:120], rows[120:])]
    (tmp_path / "a.csv").write_text(texts[0] + "\n\n")
    (tmp_path / "b.csv").write_text(texts[1])  # no final newline
    features, labels, per_file = parallel_read.load_csv([tmp_path / "a.csv", tmp_path / "b.csv"], 1)
    expected = CsvReader(1).parse(("\n".join(texts)).encode())
    np.testing.assert_array_equal(features, expected.features)
    np.testing.assert_array_equal(labels, expected.labels)
    assert per_file == [(0, 120), (1, 180)]
    (tmp_path / "bad.csv").write_text(texts[0] + "\n1,2,x,4,5\n")
    assert parallel_read.load_csv([tmp_path / "bad.csv"], 1) is None  # the streaming reader words the error
    (tmp_path / "z.csv").write_bytes(gzip.compress(texts[0].encode()))
    assert parallel_read.load_csv([tmp_path / "z.csv"], 1) is None
    body = b"".join(b"%d:%d 0:1.5 %d:2\n" % (i % 2, i % 5 + 1, i % 7 + 1) for i in range(200))
    (tmp_path / "a.libsvm").write_bytes(body)
    parsed = parallel_read.load_libsvm([tmp_path / "a.libsvm"])
    reference = LibsvmReader().parse(body)
    assert (parsed["features"] != reference.features).nnz == 0
    np.testing.assert_array_equal(parsed["labels"], reference.labels[:, 0])
    np.testing.assert_array_equal(parsed["weights"], reference.weights)
