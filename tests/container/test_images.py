"""The real images, run by a container engine: `make test-image-<name>` or `make test-images`.

For every images.yaml entry: `train` over a mounted /opt/ml, a bad hyperparameter, `serve` on a
published port with CSV, JSON and recordIO bodies, SIGTERM, and usage with no argument.
docker/images.mk sets CONTAINER_ENGINE (e.g. "podman --runtime runc"), CONTAINER_IMAGES, IMAGE_PREFIX
and IMAGE_TAG. Run directly, the engine is found by itself and images not built are skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests

from common.data.recordio_writer import encode_dense
from tools.local import write_job

pytestmark = pytest.mark.container
REPO = Path(__file__).resolve().parents[2]


CSV, JSON, RECORDIO = "text/csv", "application/json", "application/x-recordio-protobuf"


@dataclass(frozen=True)
class Job:
    """A small training job for one algorithm, and what its model and predictions look like."""

    hyperparameters: dict[str, str]
    bad: tuple[str, str]                  # (name, value) that training must reject with exit 1
    model_files: tuple[str, ...]
    accepts: tuple[str, ...] = (CSV, JSON, RECORDIO)  # request bodies served; the others must get 415
    channel: str = "train"
    content_type: str = CSV               # the training channel's; RECORDIO writes recordIO-protobuf
    labelled: bool = False                # training rows carry a 0/1 label (first CSV column)
    response_key: str = "predictions"     # top-level key of a JSON response: one entry per row
    features: int = 4
    # Hyperparameters that keep File-mode training busy for minutes, for the SIGTERM test of an
    # algorithm without Pipe mode; empty: that test trains in Pipe mode from a FIFO nobody writes.
    endless: dict[str, str] = field(default_factory=dict)


# One row per algorithm: add one when its image lands in images.yaml (a missing row fails loudly). Images
# that run the user's scripts only have their own test (test_script_images.py).
SCRIPT_ONLY = ("sklearn",)
JOBS: dict[str, Job] = {
    "kmeans": Job({"k": "3", "feature_dim": "4", "mini_batch_size": "50"}, ("mini_batch_size", "0"),
                  ("model_algo-1",)),
    "pca": Job({"feature_dim": "4", "num_components": "2", "mini_batch_size": "50"}, ("num_components", "0"),
               ("model_algo-1",), response_key="projections"),
    "knn": Job({"k": "3", "feature_dim": "4", "sample_size": "100", "predictor_type": "classifier"}, ("k", "0"),
               ("model_algo-1",), content_type=f"{CSV};label_size=1", labelled=True),
    "rcf": Job({"feature_dim": "4", "num_trees": "50", "num_samples_per_tree": "32", "mini_batch_size": "50"},
               ("num_trees", "0"), ("model_algo-1",), response_key="scores"),
    "fm": Job({"feature_dim": "4", "num_factors": "2", "predictor_type": "regressor", "epochs": "2",
               "mini_batch_size": "50"}, ("num_factors", "0"), ("model_algo-1",), accepts=(JSON, RECORDIO),
              content_type=RECORDIO, labelled=True),
    "lightgbm": Job({"num_boost_round": "5"}, ("num_boost_round", "0"), ("model.txt", "__models_info__.json"),
                    accepts=(CSV, JSON), labelled=True, response_key="probabilities",
                    endless={"num_boost_round": "100000000", "early_stopping_rounds": "0"}),
    "catboost": Job({"iterations": "5"}, ("iterations", "0"), ("model", "__models_info__.json"),
                    accepts=(CSV, JSON), labelled=True, response_key="probabilities",
                    endless={"iterations": "1000000", "early_stopping_rounds": "0", "verbose": "100000"}),
    "xgboost": Job({"num_round": "3", "objective": "binary:logistic"}, ("num_round", "0"), ("xgboost-model",),
                   labelled=True),
}


def _images_module():
    spec = importlib.util.spec_from_file_location("docker_images", REPO / "docker" / "images.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _selected(script_only: bool = False) -> list[str]:
    wanted = os.environ.get("CONTAINER_IMAGES", "").split() or list(_images_module().load())
    return [name for name in wanted if (name in SCRIPT_ONLY) == script_only]


def _find_engine() -> list[str] | None:
    given = os.environ.get("CONTAINER_ENGINE")
    for candidate in [given] if given else ["docker", "podman --runtime runc"]:
        command = shlex.split(candidate)
        if shutil.which(command[0]) and subprocess.run(
                [*command, "info"], capture_output=True, timeout=120).returncode == 0:
            return command
    return None


@pytest.fixture(scope="module", params=_selected())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def job(name: str) -> Job:
    if name not in JOBS:
        pytest.fail(f"tests/container/test_images.py has no JOBS entry for '{name}'")
    return JOBS[name]


def _data(job: Job, rows: int = 150) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centres = rng.normal(scale=5.0, size=(3, job.features))
    x = (centres[rng.integers(0, 3, rows)] + rng.normal(size=(rows, job.features))).astype(np.float32)
    return x, (x[:, 0] > np.median(x[:, 0])).astype(np.float32)


def _write_training_job(base: Path, job: Job, hyperparameters: dict[str, str]) -> None:
    x, y = _data(job)
    if job.content_type == RECORDIO:
        data = base.parent / "train.rec"
        data.write_bytes(encode_dense(x, y if job.labelled else None))
    else:
        data = base.parent / "train.csv"
        np.savetxt(data, np.column_stack([y, x]) if job.labelled else x, delimiter=",", fmt="%.6g")
    write_job(base, hyperparameters, {job.channel: ([data], job.content_type)})


def _run(engine: list[str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*engine, "run", "--rm", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(engine: list[str], image: str, job: Job, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("train") / "opt_ml"
    _write_training_job(base, job, job.hyperparameters)
    return base, _run(engine, "-v", f"{base}:/opt/ml", image, "train")


def test_train_writes_the_model(trained: tuple[Path, subprocess.CompletedProcess], job: Job) -> None:
    base, result = trained
    assert result.returncode == 0, result.stdout + result.stderr
    for name in job.model_files:
        assert (base / "model" / name).is_file(), sorted(p.name for p in (base / "model").iterdir())
    assert not (base / "output" / "failure").exists()


def test_bad_hyperparameter_exits_1_and_names_it(engine: list[str], image: str, job: Job, tmp_path: Path) -> None:
    name, value = job.bad
    base = tmp_path / "opt_ml"
    _write_training_job(base, job, {**job.hyperparameters, name: value})
    result = _run(engine, "-v", f"{base}:/opt/ml", image, "train")
    assert result.returncode == 1, result.stdout + result.stderr
    assert name in (base / "output" / "failure").read_text()


def test_no_argument_prints_usage(engine: list[str], image: str) -> None:
    result = _run(engine, image, timeout=60)
    assert result.returncode == 2
    assert "usage:" in result.stderr and "train" in result.stderr and "serve" in result.stderr


def test_image_declares_the_sagemaker_label_and_port(engine: list[str], image: str) -> None:
    config = json.loads(subprocess.run([*engine, "image", "inspect", "--format", "{{json .Config}}", image],
                                       capture_output=True, text=True, check=True).stdout)
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.multi-models"] == "true"
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Entrypoint"] == ["python", "-m", "common.entrypoint"]


def test_image_carries_no_compiler_or_caches(engine: list[str], image: str) -> None:
    script = ("for tool in gcc cc c++ ld strip; do command -v $tool; done; "
              "ls -d /root/.cache /var/lib/apt/lists/*_Packages /tmp/* /opt/tools 2>/dev/null; true")
    result = _run(engine, "--entrypoint", "sh", image, "-c", script, timeout=60)
    assert result.stdout.split() == [], result.stdout


@dataclass
class Server:
    url: str
    container: str


@contextmanager
def _serving(engine: list[str], image: str, model_dir: Path) -> Iterator[Server]:
    container = subprocess.run([*engine, "run", "-d", "-p", "127.0.0.1::8080", "-v", f"{model_dir}:/opt/ml/model:ro",
                                image, "serve"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        address = subprocess.run([*engine, "port", container, "8080/tcp"], capture_output=True, text=True,
                                 check=True).stdout.split()[0]
        url = f"http://{address}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(url + "/ping", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # the port forwarder may accept first
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server never answered /ping:\n" + _logs(engine, container))
            time.sleep(0.25)
        yield Server(url, container)
    finally:
        _remove(engine, container)


def _remove(engine: list[str], container: str) -> None:
    subprocess.run([*engine, "kill", container], capture_output=True)
    subprocess.run([*engine, "rm", "-f", container], capture_output=True)


def _logs(engine: list[str], container: str) -> str:
    result = subprocess.run([*engine, "logs", container], capture_output=True, text=True)
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def server(engine: list[str], image: str, trained: tuple[Path, subprocess.CompletedProcess]) -> Iterator[Server]:
    base, result = trained
    assert result.returncode == 0, "training failed, nothing to serve"
    with _serving(engine, image, base / "model") as running:
        yield running


@pytest.mark.parametrize("content_type", [CSV, JSON, RECORDIO])
def test_serve_answers_invocations(server: Server, job: Job, content_type: str) -> None:
    x = _data(job)[0][:3]
    body = {
        CSV: "\n".join(",".join(repr(float(v)) for v in row) for row in x).encode(),
        JSON: json.dumps({"instances": [{"features": row.tolist()} for row in x]}).encode(),
        RECORDIO: encode_dense(x),
    }[content_type]
    response = requests.post(server.url + "/invocations", data=body, timeout=30,
                             headers={"Content-Type": content_type, "Accept": JSON})
    if content_type not in job.accepts:
        assert response.status_code == 415, response.text
        return
    assert response.status_code == 200, response.text
    assert len(response.json()[job.response_key]) == len(x), response.text


def test_serve_stops_on_sigterm_within_seconds(engine: list[str], image: str,
                                               trained: tuple[Path, subprocess.CompletedProcess]) -> None:
    with _serving(engine, image, trained[0] / "model") as server:
        start = time.monotonic()
        subprocess.run([*engine, "kill", "--signal", "TERM", server.container], check=True, capture_output=True)
        code = subprocess.run([*engine, "wait", server.container], capture_output=True, text=True, timeout=30)
        assert time.monotonic() - start < 10
        assert code.stdout.strip() == "0", _logs(engine, server.container)


def test_train_stops_on_sigterm_within_seconds(engine: list[str], image: str, job: Job, tmp_path: Path) -> None:
    base = tmp_path / "opt_ml"
    if job.endless:
        _write_training_job(base, job, {**job.hyperparameters, **job.endless})
    else:
        write_job(base, job.hyperparameters, {job.channel: ([], job.content_type)}, input_mode="Pipe")
        (base / "input" / "data").mkdir(parents=True, exist_ok=True)
        os.mkfifo(base / "input" / "data" / f"{job.channel}_0")  # nobody writes: training waits on it
    container = subprocess.run([*engine, "run", "-d", "-v", f"{base}:/opt/ml", image, "train"],
                               capture_output=True, text=True, check=True).stdout.strip()
    try:
        time.sleep(3)  # let it reach the read, or train for a while
        running = subprocess.run([*engine, "inspect", "--format", "{{.State.Running}}", container],
                                 capture_output=True, text=True).stdout.strip()
        assert running == "true", "training ended before SIGTERM was sent:\n" + _logs(engine, container)
        subprocess.run([*engine, "kill", "--signal", "TERM", container], check=True, capture_output=True)
        try:
            code = subprocess.run([*engine, "wait", container], capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("training ignored SIGTERM for 10 s")
        # Stopped, not finished: 143 (128 + SIGTERM) from the entrypoint's handler (common/stopping.py).
        assert code.stdout.strip() == "143", _logs(engine, container)
    finally:
        _remove(engine, container)
