"""The shared script-mode runtime (common/script_mode) in-process: what a training script is given in each
image that has script mode, the handlers' optional `context`, the default handlers and model loaders, and the
sklearn image refusing a job or an endpoint without the user's code (seed 002's flow: tests/integration)."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from algorithms.catboost.algorithm import CatBoost
from algorithms.lightgbm.algorithm import LightGBM
from algorithms.sklearn.algorithm import SKLearn
from algorithms.xgboost.algorithm import XGBoost
from common.errors import UnsupportedAccept, UnsupportedContentType, UserError
from common.paths import Paths
from common.script_mode import env, handlers, training
from common.script_mode import serving as script_serving
from common.serving.app import create_app
from common.training import run_training
from tests.conftest import REPO
from tools.local import entrypoint_env, write_job

IMAGES = {"xgboost": XGBoost, "lightgbm": LightGBM, "catboost": CatBoost, "sklearn": SKLearn}
SDK = {"sagemaker_program": '"train.py"', "sagemaker_container_log_level": "20", "sagemaker_region": '"eu-west-1"',
       "sagemaker_job_name": '"job"'}
# Writes what it was given, and imports what the image and the SDK's `dependencies` put on its path.
SCRIPT = """
import json, os, sys
import my_dependency
compat = {}
for name in ("sagemaker_containers._content_types", "sagemaker_xgboost_container.encoder"):
    try:
        __import__(name)
        compat[name] = True
    except ImportError:
        compat[name] = False
seen = {"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items() if k.startswith("SM_")},
        "cwd": os.getcwd(), "dependency": my_dependency.VALUE, "compat": compat}
with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "seen.json"), "w") as out:
    json.dump(seen, out)
sys.exit(int(os.environ["SM_HP_EXIT_CODE"]))
"""


@pytest.fixture(autouse=True)
def no_serving_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY", "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"):
        monkeypatch.delenv(name, raising=False)


def _code(folder: Path) -> Path:
    """source_dir with train.py, and a `dependencies` folder next to it, as the SDK's sourcedir.tar.gz holds them."""
    (folder / "my_dependency").mkdir(parents=True)
    (folder / "my_dependency" / "__init__.py").write_text("VALUE = 'from the dependency'\n")
    (folder / "train.py").write_text(SCRIPT)
    return folder


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_every_script_mode_image_runs_the_script_with_its_arguments_and_path(tmp_path: Path, image: str) -> None:
    base, code_dir = tmp_path / "ml", _code(tmp_path / "src")
    hyperparameters = {**SDK, "sagemaker_submit_directory": json.dumps(str(code_dir)), "eta": "0.25",
                       "max-depth": "5", "exit_code": "0"}
    write_job(base, hyperparameters, {"train": ([], "text/csv"), "validation": ([], "text/csv")})
    assert run_training(IMAGES[image], Paths(base)) == 0
    seen = json.loads((base / "output" / "data" / "seen.json").read_text())
    assert seen["argv"] == ["--eta", "0.25", "--exit_code", "0", "--max-depth", "5"]
    assert seen["dependency"] == "from the dependency" and seen["cwd"] == str(code_dir)
    assert seen["compat"] == {"sagemaker_containers._content_types": image == "sklearn",
                              "sagemaker_xgboost_container.encoder": image == "xgboost"}
    variables = seen["env"]
    assert variables["SM_CHANNELS"] == '["train","validation"]'
    assert variables["SM_CHANNEL_VALIDATION"] == str(base / "input" / "data" / "validation")
    assert variables["SM_HPS"] == '{"eta":0.25,"exit_code":0,"max-depth":5}' and variables["SM_HP_MAX-DEPTH"] == "5"
    assert variables["SM_OUTPUT_DATA_DIR"] == str(base / "output" / "data") and variables["SM_NUM_NEURONS"] == "0"
    assert json.loads(variables["SM_FRAMEWORK_PARAMS"]) == {}  # sagemaker_region and the like are reserved


def test_a_failing_script_fails_the_job_with_its_code_and_the_sklearn_image_needs_a_script(tmp_path: Path) -> None:
    base, code_dir = tmp_path / "ml", _code(tmp_path / "src")
    write_job(base, {**SDK, "sagemaker_submit_directory": json.dumps(str(code_dir)), "exit_code": "4"}, {})
    assert run_training(SKLearn, Paths(base)) == 4
    assert (base / "output" / "failure").read_text().startswith(
        "ClientError: ExecuteUserScriptError: train.py exited with code 4.\nExitCode 4\n")
    write_job(base, {"max_depth": "5"}, {"train": ([], "text/csv")})
    assert run_training(SKLearn, Paths(base)) == 1
    assert (base / "output" / "failure").read_text().startswith(
        "ClientError: This image runs training scripts only, as SageMaker's SKLearn framework container does, "
        "and the job names none")
    with pytest.raises(UserError, match="This image serves inference modules only"):
        script_serving.prepare(base / "model", SKLearn.script_mode)
    # an image with an algorithm of its own serves that
    assert script_serving.load(base / "model", XGBoost.script_mode) is None


def test_the_code_folder_goes_first_on_the_path_then_the_images_helpers(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/already/there")
    paths = training.pythonpath(tmp_path, XGBoost.script_mode).split(":")
    assert paths[0] == str(tmp_path) and paths[1].endswith("algorithms/xgboost/compat")
    assert paths[-1] == "/already/there"
    assert training.pythonpath(tmp_path, LightGBM.script_mode) == f"{tmp_path}:/already/there"
    user, sagemaker = env.split(env.decode({"sagemaker_program": '"train.py"', "_tuning_objective_metric": "x",
                                            "lr": '"0.1"', "layers": "[1, 2]", "flag": "True", "k": "3"}))
    assert set(sagemaker) == {"sagemaker_program", "_tuning_objective_metric"}
    assert env.cli_args(user) == ["--flag", "True", "-k", "3", "--layers", "[1, 2]", "--lr", "0.1"]


# ---- serving ----------------------------------------------------------------------------------------------------

WITH_CONTEXT = """
import json

def model_fn(model_dir, context):
    return {"dir": context.system_properties["model_dir"], "name": context.model_name}

def input_fn(body, content_type, context):
    return json.loads(body)

def predict_fn(data, model):  # no context: called with two arguments
    return {"sum": sum(data), **model}

def output_fn(prediction, accept, context):
    return json.dumps({**prediction, "gpu": context.system_properties["gpu_id"]}), accept
"""
TRANSFORM_WITH_CONTEXT = """
def model_fn(model_dir):
    return 2

def transform_fn(model, body, content_type, accept, context):
    return f"{model * len(body)} {content_type} {accept} {context.model_name}", "text/plain"
"""


def _client(image: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, name: str = "inference.py"):
    code_dir, model_dir = tmp_path / "code", tmp_path / "model"
    code_dir.mkdir(exist_ok=True)
    model_dir.mkdir(exist_ok=True)
    (code_dir / name).write_text(source)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("SAGEMAKER_PROGRAM", name)
    monkeypatch.setenv("SAGEMAKER_SUBMIT_DIRECTORY", str(code_dir))
    script_serving.prepare(model_dir, image.script_mode)
    return create_app(image, model_dir).test_client()


def test_handlers_that_take_one_more_parameter_get_the_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(SKLearn, tmp_path, monkeypatch, WITH_CONTEXT, "with_context.py")
    response = client.post("/invocations", data=b"[1, 2, 3]", headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.data
    assert response.get_json() == {"sum": 6, "dir": str(tmp_path / "model"), "name": "with_context", "gpu": None}
    transform = _client(SKLearn, tmp_path, monkeypatch, TRANSFORM_WITH_CONTEXT, "transform_context.py")
    answered = transform.post("/invocations", data=b"abc", headers={"Content-Type": "text/csv"})
    assert (answered.data, answered.mimetype) == (b"6 text/csv application/json transform_context", "text/plain")


def test_default_input_and_output_handlers() -> None:
    csv = handlers.input_fn("1,2\n3,", "text/csv")
    assert csv.shape == (2, 2) and csv.dtype == np.float32 and np.isnan(csv[1, 1])
    assert handlers.input_fn(b"[[1, 2]]", "application/json").tolist() == [[1.0, 2.0]]
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6).reshape(2, 3))
    assert handlers.input_fn(buffer.getvalue(), "application/x-npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(UnsupportedContentType):
        handlers.input_fn(b"1 0:1", "text/libsvm")
    with pytest.raises(UserError, match="could not be read as an array"):
        handlers.input_fn(b'{"a": ', "application/json")
    prediction = np.array([0.5, 2.0])
    assert handlers.output_fn(prediction, "application/json") == (b"[0.5, 2.0]", "application/json")
    assert handlers.output_fn(prediction, "*/*") == (b"[0.5, 2.0]", "application/json")
    assert handlers.output_fn(np.array([[1, 2], [3, 4]]), "text/csv") == (b"1,2\n3,4\n", "text/csv")
    body, content_type = handlers.output_fn(prediction, "application/x-npy")
    assert content_type == "application/x-npy" and np.load(io.BytesIO(body)).tolist() == [0.5, 2.0]
    with pytest.raises(UnsupportedAccept):
        handlers.output_fn(prediction, "text/html")


def test_sklearn_loads_model_joblib_or_model_pkl_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(np.array([[0.0], [1.0]]), np.array([1.0, 3.0]))
    (tmp_path / "model").mkdir()
    joblib.dump(model, tmp_path / "model" / "model.joblib")
    client = _client(SKLearn, tmp_path, monkeypatch, "", "defaults_only.py")  # no handler at all
    answered = client.post("/invocations", data=b"2\n3", headers={"Content-Type": "text/csv", "Accept": "text/csv"})
    assert answered.status_code == 200 and answered.mimetype == "text/csv"
    assert [float(v) for v in answered.data.split()] == pytest.approx([5.0, 7.0])
    (tmp_path / "model" / "model.joblib").rename(tmp_path / "model" / "model.pkl")
    (tmp_path / "model" / "model.pkl").write_bytes(pickle.dumps(model))
    client = _client(SKLearn, tmp_path, monkeypatch, "", "defaults_only.py")
    assert client.post("/invocations", data=b"[[2]]", headers={"Content-Type": "application/json"}).get_json() \
        == pytest.approx([5.0])
    (tmp_path / "model" / "model.pkl").unlink()
    ping = _client(SKLearn, tmp_path, monkeypatch, "", "defaults_only.py").get("/ping")
    assert ping.status_code == 500 and "has neither model.joblib nor model.pkl" in ping.get_data(as_text=True)


FRESH_SERVER = """
import json, sys
from pathlib import Path
from algorithms.sklearn.algorithm import SKLearn
from common.script_mode import serving
from common.serving.app import create_app
model_dir = Path(sys.argv[1])
serving.prepare(model_dir, SKLearn.script_mode)
client = create_app(SKLearn, model_dir).test_client()  # each worker's load: model_fn, then warm_up
loaded = "common.data.csv_reader" in sys.modules
import calls
body = b"2.0000000000000004\\n3"  # 17 digits, as Python writes a float64
answered = client.post("/invocations", data=body, headers={"Content-Type": "text/csv", "Accept": "text/csv"})
print(json.dumps([loaded, calls.CALLS, answered.status_code, answered.get_data(as_text=True), "numba" in sys.modules]))
"""


@pytest.mark.parametrize("own_input_fn", [False, True])
def test_a_user_modules_server_loads_the_default_csv_reader_before_its_first_request_and_never_numba(
        tmp_path: Path, own_input_fn: bool) -> None:
    from sklearn.linear_model import LinearRegression

    (tmp_path / "model").mkdir()
    model = LinearRegression().fit(np.array([[0.0], [1.0]]), np.array([1.0, 3.0]))
    joblib.dump(model, tmp_path / "model" / "model.joblib")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "calls.py").write_text("CALLS = []\n")
    own = ("import numpy as np\ndef input_fn(body, content_type):\n    calls.CALLS.append(content_type)\n"
           "    return np.array([[float(v)] for v in body.split()])\n")
    (tmp_path / "code" / "inference.py").write_text("import calls\n" + (own if own_input_fn else ""))
    env = {**entrypoint_env("sklearn", tmp_path), "SAGEMAKER_PROGRAM": "inference.py",
           "SAGEMAKER_SUBMIT_DIRECTORY": str(tmp_path / "code")}
    done = subprocess.run([sys.executable, "-c", FRESH_SERVER, str(tmp_path / "model")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    loaded, calls, status, body, numba = json.loads(done.stdout.strip().splitlines()[-1])
    assert (status, [float(v) for v in body.split()]) == (200, pytest.approx([5.0, 7.0]))
    assert loaded is not own_input_fn  # the image's input_fn warmed; the user's never called before a request
    assert calls == (["text/csv"] if own_input_fn else [])
    assert numba is False


def test_lightgbm_and_catboost_serve_a_user_module_with_their_own_model_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import catboost
    import lightgbm

    x = np.random.default_rng(0).normal(size=(100, 2))
    y = x[:, 0] * 2
    (tmp_path / "lightgbm" / "model").mkdir(parents=True)
    (tmp_path / "catboost" / "model").mkdir(parents=True)
    lightgbm.train({"verbose": -1}, lightgbm.Dataset(x, y), 5).save_model(str(tmp_path / "lightgbm/model/model.txt"))
    catboost.CatBoostRegressor(iterations=5, verbose=False, thread_count=1, allow_writing_files=False).fit(
        x, y).save_model(str(tmp_path / "catboost" / "model" / "model"))
    for image in (LightGBM, CatBoost):  # no model_fn: the image's own model file, loaded by the library
        client = _client(image, tmp_path / image.name, monkeypatch,
                         "def predict_fn(data, model):\n    return model.predict(data)\n", f"{image.name}_module.py")
        answered = client.post("/invocations", data=b"2,0\n-2,0", headers={"Content-Type": "text/csv"})
        assert answered.status_code == 200, answered.data
        high, low = answered.get_json()
        assert high > low, image.name
