"""XGBoost script mode in-process: what a script is given, where its code comes from, the sagemaker_xgboost_container
helpers, and serving with a user module through the Flask app (the entrypoint runs: tests/integration)."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
import tarfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import xgboost as xgb

from algorithms.xgboost.algorithm import COMPAT_DIR, XGBoost
from common.data.recordio_writer import encode_dense
from common.errors import UserError
from common.paths import Paths
from common.script_mode import code, module, serving
from common.script_mode import env as script_env
from common.script_mode.training import failure_message
from common.serving.app import create_app
from common.serving.endpoint import load_endpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "xgboost_script"
SDK_HYPERPARAMETERS = {  # what sagemaker.xgboost.XGBoost(entry_point=..., hyperparameters=...) writes (json.dumps)
    "train": '"titanic_train.csv"', "max_depth": "5", "eta": "0.1", "early": "true", "k": "3",
    "nested": '{"b": 2, "a": 1}', "plain": "abc def", "sagemaker_program": '"train_xgboost.py"',
    "sagemaker_submit_directory": '"s3://bucket/job/source/sourcedir.tar.gz"', "sagemaker_region": '"eu-west-1"',
    "sagemaker_container_log_level": "20", "sagemaker_estimator_class_name": '"XGBoost"',
    "_tuning_objective_metric": '"validation:auc"',
}


@pytest.fixture(autouse=True)
def compat_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(COMPAT_DIR))
    for name in ("SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY", "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"):
        monkeypatch.delenv(name, raising=False)


def test_sdk_hyperparameters_become_sorted_cli_args_and_sm_variables(tmp_path: Path) -> None:
    user, sagemaker = script_env.split(script_env.decode(SDK_HYPERPARAMETERS))
    assert set(sagemaker) == {k for k in SDK_HYPERPARAMETERS if k.startswith(("sagemaker_", "_"))}
    assert script_env.cli_args(user) == ["--early", "True", "--eta", "0.1", "-k", "3", "--max_depth", "5",
                                         "--nested", "a=1,b=2", "--plain", "abc def", "--train", "titanic_train.csv"]
    paths = Paths(tmp_path)
    job = script_env.ScriptJob(paths, user, sagemaker, "train_xgboost.py", "s3://bucket/job/source/sourcedir.tar.gz",
                               {"validation": {}, "train": {}},
                               {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]})
    env = job.environment()
    assert json.loads(env["SM_HPS"]) == {"train": "titanic_train.csv", "max_depth": 5, "eta": 0.1, "early": True,
                                         "k": 3, "nested": {"a": 1, "b": 2}, "plain": "abc def"}
    assert env["SM_HP_MAX_DEPTH"] == "5" and env["SM_HP_TRAIN"] == "titanic_train.csv"
    assert env["SM_HP_NESTED"] == '{"a":1,"b":2}' and env["SM_HP_EARLY"] == "true"
    assert env["SM_CHANNELS"] == '["train","validation"]'
    assert env["SM_CHANNEL_TRAIN"] == str(tmp_path / "input" / "data" / "train")
    assert env["SM_MODEL_DIR"] == str(tmp_path / "model") and env["SM_OUTPUT_DATA_DIR"] == str(tmp_path / "output/data")
    assert (env["SM_HOSTS"], env["SM_CURRENT_HOST"]) == ('["algo-1","algo-2"]', "algo-2")
    assert env["SM_MODULE_NAME"] == "train_xgboost" and env["SM_MODULE_DIR"].startswith("s3://")
    assert json.loads(env["SM_USER_ARGS"]) == script_env.cli_args(user)
    assert json.loads(env["SM_FRAMEWORK_PARAMS"]) == {"sagemaker_estimator_class_name": "XGBoost"}
    training_env = json.loads(env["SM_TRAINING_ENV"])
    assert training_env["is_master"] is False and training_env["hyperparameters"]["eta"] == 0.1
    assert int(env["SM_NUM_CPUS"]) >= 1 and env["SM_NUM_GPUS"].isdigit() and env["SM_LOG_LEVEL"] == "20"
    for name in ("SM_INPUT_DIR", "SM_INPUT_CONFIG_DIR", "SM_OUTPUT_DIR", "SM_INPUT_TRAINING_CONFIG_FILE"):
        assert env[name].startswith(str(tmp_path))


def _tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return path


def test_code_comes_from_a_folder_a_file_uri_a_tarball_or_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths, target = Paths(tmp_path / "ml"), tmp_path / "ml" / "code"
    folder = tmp_path / "src"
    folder.mkdir()
    assert code.fetch(str(folder), paths, target) == folder  # used where it is
    assert code.fetch(f"file://{folder}", paths, target) == folder
    archive = _tarball(tmp_path / "sourcedir.tar.gz", {"train.py": "print(1)\n", "lib/util.py": ""})
    assert code.fetch(str(archive), paths, target) == target
    assert (target / "train.py").read_text() == "print(1)\n" and (target / "lib" / "util.py").exists()
    # SageMaker's own path for a code channel follows SAGEMAKER_BASE_DIR
    moved = paths.base / "input" / "data" / "code"
    moved.mkdir(parents=True)
    assert code.local_path("/opt/ml/input/data/code", paths) == moved
    with pytest.raises(UserError, match="does not exist"):
        code.fetch(str(tmp_path / "nowhere"), paths, target)
    monkeypatch.setitem(sys.modules, "boto3", None)  # an image without boto3 (S3 itself: test_script_mode_s3.py)
    with pytest.raises(UserError, match="no boto3 to download it"):
        code.fetch("s3://bucket/prefix/sourcedir.tar.gz", paths, tmp_path / "s3code")


def test_failure_message_keeps_the_end_of_stderr_within_1024_characters() -> None:
    tail = "".join(f"noise line {i}\n" for i in range(500)) + "ValueError: Age column has no numbers\n"
    message = failure_message("train.py", 3, tail, ["python", "train.py", "--eta", "0.1"])
    assert len(message) <= 1024
    assert message.startswith("ClientError: ExecuteUserScriptError: train.py exited with code 3.\nExitCode 3\n")
    assert message.endswith('ValueError: Age column has no numbers"\nCommand "python train.py --eta 0.1"')
    assert '\nErrorMessage "noise line' in message  # starts at a whole line


def test_get_dmatrix_reads_folders_and_files_and_gives_none_without_data(tmp_path: Path) -> None:
    from sagemaker_xgboost_container.data_utils import get_dmatrix

    csv_dir = tmp_path / "train"
    (csv_dir / "part").mkdir(parents=True)
    (csv_dir / "a.csv").write_text("1,0.5,1.5\n0,2,3\n")
    (csv_dir / "part" / "b.csv").write_text("1,4,\n")
    (csv_dir / "_SUCCESS").write_text("")
    matrix = get_dmatrix(str(csv_dir), "csv")
    assert (matrix.num_row(), matrix.num_col()) == (3, 2) and matrix.get_label().tolist() == [1, 0, 1]
    weighted = get_dmatrix(csv_dir / "a.csv", "text/csv", csv_weights=1)
    assert weighted.num_col() == 1 and weighted.get_weight().tolist() == [0.5, 2.0]
    (tmp_path / "train.libsvm").write_text("1 0:1.5 3:2\n0 1:1\n")
    sparse = get_dmatrix(str(tmp_path / "train.libsvm"), "libsvm")
    assert (sparse.num_row(), sparse.num_col()) == (2, 4)
    (tmp_path / "empty").mkdir()
    assert get_dmatrix(str(tmp_path / "empty"), "csv") is None
    assert get_dmatrix(str(tmp_path / "missing"), "libsvm") is None
    with pytest.raises(UserError, match="not an accepted ContentType"):
        get_dmatrix(str(csv_dir), "application/json")


def test_encoder_decodes_request_bodies_to_dmatrix() -> None:
    from sagemaker_xgboost_container import encoder

    dense = encoder.csv_to_dmatrix("1,2\n3,")
    assert (dense.num_row(), dense.num_col()) == (2, 2)
    assert encoder.libsvm_to_dmatrix(b"1 0:1 2:3\n4:1").num_col() == 5
    assert encoder.decode(encode_dense(np.ones((3, 4))), "application/x-recordio-protobuf").num_row() == 3
    assert encoder.decode(b"0:1", "text/x-libsvm; charset=utf-8").num_row() == 1
    with pytest.raises(UserError, match="not supported") as refused:
        encoder.decode(b"[1, 2]", "application/json")
    assert refused.value.status == 415


def _cancer() -> xgb.DMatrix:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return xgb.DMatrix(x, label=y)


def _rounds(out: str) -> list[str]:
    """The evaluation lines' round numbers (XGBoost may log other lines, e.g. after another test's collective)."""
    return [line.split("\t")[0] for line in out.splitlines() if re.match(r"\[\d+\]\t", line)]


def test_checkpointing_train_resumes_from_the_newest_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sagemaker_xgboost_container import checkpointing

    dtrain = _cancer()
    args = {"params": {"objective": "binary:logistic", "max_depth": 2}, "dtrain": dtrain, "num_boost_round": 6,
            "evals": [(dtrain, "train")]}
    complete = checkpointing.train(args, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"xgboost-checkpoint.{i}" for i in range(1, 6)]
    assert _rounds(capsys.readouterr().out) == [f"[{i}]" for i in range(6)]
    for i in (4, 5):  # as if the job stopped after round 3
        (tmp_path / f"xgboost-checkpoint.{i}").unlink()
    resumed = checkpointing.train(args, str(tmp_path))
    assert _rounds(capsys.readouterr().out) == ["[4]", "[5]"]
    assert resumed.num_boosted_rounds() == 6
    np.testing.assert_allclose(resumed.predict(dtrain), complete.predict(dtrain), rtol=1e-6)
    assert checkpointing.train({**args, "num_boost_round": 2}, None).num_boosted_rounds() == 2


def test_rabit_run_on_one_host_runs_the_function_as_master() -> None:
    from sagemaker_xgboost_container import distributed

    def fit(value: int, is_master: bool) -> tuple[int, bool, int]:
        return value, is_master, xgb.collective.get_world_size()

    assert distributed.rabit_run(fit, {"value": 7}, True, ["algo-1"], "algo-1", update_rabit_args=True) == (7, True, 1)
    with pytest.raises(SystemExit) as left:
        distributed.rabit_run(fit, {"value": 7}, False, ["algo-1"], "algo-1")
    assert left.value.code == 0  # as upstream: a host without data leaves quietly


# ---- serving with a user module ---------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A booster saved with joblib (as seeds 001/003 do) and a code folder; SAGEMAKER_BASE_DIR in tmp_path."""
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "ml"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(x, label=(x[:, 0] > 0)), 5)
    model_dir, code = tmp_path / "ml" / "model", tmp_path / "code"
    model_dir.mkdir(parents=True)
    code.mkdir()
    joblib.dump(booster, model_dir / "xgboost-model")
    booster.save_model(model_dir / "native.json")
    return {"model": model_dir, "code": code}


def _client(served: dict[str, Path], monkeypatch: pytest.MonkeyPatch, program: str, source: str | None = None):
    if source is None:
        shutil.copy(FIXTURES / program, served["code"] / program)
    else:
        (served["code"] / program).write_text(source)
    monkeypatch.setenv("SAGEMAKER_PROGRAM", program)
    monkeypatch.setenv("SAGEMAKER_SUBMIT_DIRECTORY", str(served["code"]))
    return create_app(XGBoost, served["model"]).test_client()


def _post(client, body: bytes, content_type: str | None = "text/csv", accept: str | None = None):
    headers = {k: v for k, v in (("Content-Type", content_type), ("Accept", accept)) if v}
    return client.post("/invocations", data=body, headers=headers)


def test_user_module_functions_answer(served: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(served, monkeypatch, "train_xgboost.py")  # seed 002's input_fn (np.genfromtxt) and ours
    assert client.get("/ping").status_code == 200
    response = _post(client, b"2,0,0\n-2,0,0", "text/csv", "text/csv")
    assert response.status_code == 200 and response.mimetype == "application/json"  # output_fn's content type
    survived = response.get_json()["survived"]
    assert survived[0] > 0.5 > survived[1]


def test_transform_fn_alone_and_the_error_when_combined(served: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(served, monkeypatch, "transform_inference.py")
    response = _post(client, b"2,0,0\n-2,0,0\n")
    assert (response.status_code, response.data, response.mimetype) == (200, b"survived\ndied", "text/plain")
    both = _client(served, monkeypatch, "both_inference.py")
    ping = both.get("/ping")
    assert ping.status_code == 500 and module.TRANSFORM_CONFLICT in ping.get_data(as_text=True)
    assert _post(both, b"1,2,3").status_code == 503


DEFAULTS_ONLY = """
import os
import xgboost as xgb

def model_fn(model_dir):
    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, "native.json"))
    return booster
"""


def test_defaults_decode_predict_and_encode(served: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(served, monkeypatch, "inference.py", DEFAULTS_ONLY)
    as_json = _post(client, b"2,0,0\n-2,0,0")  # no Accept: JSON
    assert as_json.mimetype == "application/json"
    scores = as_json.get_json()
    assert len(scores) == 2 and scores[0] > 0.5 > scores[1]
    as_csv = _post(client, b"2,0,0\n-2,0,0", accept="text/csv")
    assert [float(v) for v in as_csv.data.decode().split()] == pytest.approx(scores, rel=1e-6)
    as_npy = _post(client, b"1 0:2\n1 0:-2", "text/libsvm", "application/x-npy")
    np.testing.assert_allclose(np.load(io.BytesIO(as_npy.data)), scores, rtol=1e-6)
    recordio = _post(client, encode_dense(np.array([[2.0, 0, 0]])), "application/x-recordio-protobuf")
    assert recordio.get_json() == pytest.approx(scores[:1], rel=1e-6)
    monkeypatch.setenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
    assert _post(client, b"2,0,0", accept="*/*").mimetype == "text/csv"
    assert _post(client, b"[[2, 0, 0]]", "application/json").status_code == 415
    assert _post(client, b"2,0,0", accept="text/html").status_code == 406


def test_missing_model_fn_and_failing_user_code_say_so(served: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    no_model_fn = "def input_fn(body, content_type):\n    return body\n"
    assert _client(served, monkeypatch, "nomodel.py", no_model_fn).get("/ping").status_code == 200  # the default
    (served["model"] / "xgboost-model").unlink()
    ping = _client(served, monkeypatch, "nomodel.py", no_model_fn).get("/ping")
    assert ping.status_code == 500 and "has no model_fn" in ping.get_data(as_text=True)
    assert "has no xgboost-model" in ping.get_data(as_text=True)
    failing = _client(served, monkeypatch, "failing_inference.py",
                      DEFAULTS_ONLY + "\ndef predict_fn(data, model):\n    return 1 / 0\n")
    response = _post(failing, b"1,2,3")
    assert response.status_code == 500
    assert response.get_data(as_text=True) == "predict_fn raised ZeroDivisionError: division by zero\n"


def test_code_saved_in_the_model_is_found_without_variables(served: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = served["model"] / "code"
    saved.mkdir()
    (saved / "inference.py").write_text(DEFAULTS_ONLY)
    model = load_endpoint(XGBoost, served["model"])
    assert isinstance(model, module.UserModule)
    body, content_type = model.answer(b"2,0,0", "text/csv", None)
    assert content_type == "application/json" and json.loads(body)[0] > 0.5
    shutil.rmtree(saved)
    assert serving.load(served["model"], XGBoost.script_mode) is None  # algorithm mode again


SKLEARN_MODEL_FN = """
import os
import xgboost as xgb

def model_fn(model_dir):
    model = xgb.XGBClassifier()  # xgboost's scikit-learn API: needs xgboost imported with scikit-learn
    model.load_model(os.path.join(model_dir, "native.json"))
    return model

def predict_fn(data, model):
    return model.get_booster().predict(data)
"""
SERVE_AND_LIST_IMPORTS = ("import pathlib, sys; from common.serving.app import create_app; "
                          "from algorithms.xgboost import ALGORITHM; "
                          "client = create_app(ALGORITHM, pathlib.Path(sys.argv[1])).test_client(); "
                          "assert client.get('/ping').status_code == 200, client.get('/ping').text; "
                          "print(sorted(m for m in ('sklearn', 'pandas') if m in sys.modules))")


def test_algorithm_mode_serving_hides_scikit_learn_and_a_user_module_gets_it(served: dict) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("pandas")
    import subprocess

    from tools.local import entrypoint_env

    base = served["model"].parent
    algorithm_mode = served["model"].parent.parent / "algorithm_model"
    algorithm_mode.mkdir()
    shutil.copy(served["model"] / "native.json", algorithm_mode / "xgboost-model")
    shown = subprocess.run([sys.executable, "-c", SERVE_AND_LIST_IMPORTS, str(algorithm_mode)], text=True,
                           capture_output=True, env=entrypoint_env("xgboost", base))
    assert shown.stdout.strip() == "[]", shown.stderr  # the booster loads through lib.py
    (served["code"] / "inference.py").write_text(SKLEARN_MODEL_FN)
    user = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": str(served["code"])}
    shown = subprocess.run([sys.executable, "-c", SERVE_AND_LIST_IMPORTS, str(served["model"])], text=True,
                           capture_output=True, env=entrypoint_env("xgboost", base, user))
    assert "sklearn" in shown.stdout, shown.stderr  # the user's module was imported first
