"""No image compiles a numba kernel at run time: `make test-image-<name>` or `make test-images`.

The image's build (docker/warm_up.py) fills /opt/numba-cache with every kernel and signature a job or a request
can reach. Here each image trains from every content type its training channel reads through numba (CSV,
dense and sparse recordIO, libsvm), then serves a request of every content type it lists in `describe`,
dense and sparse, one row and many, answered in every Accept type it lists, all in containers whose root file
system is read-only (`--read-only`, so the cache cannot be written) with numba's cache log on
(NUMBA_DEBUG_CACHE=1). A kernel the cache lacks would be compiled in memory, logged "kept in memory only"
(common/data/jit.py); a writable cache would log "[cache] data saved". Neither may appear, and every image
whose code runs numba must log "[cache] data loaded".
"""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests
import scipy.sparse as sp

from common.data.recordio_writer import encode_dense, encode_sparse
from tests.container import test_images as images
from tests.container.test_images import CSV, JOBS, JSON, RECORDIO, SCRIPT_ONLY, Job
from tests.container.test_script_images import INFERENCE, TRAIN
from tools.local import write_job

pytestmark = pytest.mark.container

JSONLINES, LIBSVM, NPY = "application/jsonlines", "text/libsvm", "application/x-npy"
READ_ONLY = ("--read-only", "--tmpfs", "/tmp", "-e", "NUMBA_DEBUG_CACHE=1")
MISSES = ("kept in memory only", "[cache] data saved")
HIT = "[cache] data loaded"
MANY = 2000  # rows of the big requests: past kmeans' small-request route (rows x centres > 4096)
SKLEARN_FEATURES = 3  # what TRAIN fits (tests/container/test_script_images.py)
# Training that reads no data through numba: the tabular images parse their CSV files with Python's csv module
# (common/tabular/tables.py), a script image runs the user's script.
NO_NUMBA_TRAINING = ("lightgbm", "catboost", *SCRIPT_ONLY)
LABELLED_TEST = ("rcf",)  # a test channel whose rows carry a label even where training rows do not


@pytest.fixture(scope="module", params=images._selected() + images._selected(script_only=True))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def described(engine: list[str], image: str) -> dict:
    """The image's own `describe`: its training channels' and its endpoint's content types."""
    result = subprocess.run([*engine, "run", "--rm", image, "describe"], capture_output=True, text=True,
                            timeout=120, check=True)
    return json.loads(result.stdout)


def _problems(log: str, what: str, numba_runs: bool = True) -> list[str]:
    """What `log` shows of kernels compiled at run time, or of numba's cache never being read."""
    misses = [f"{what}: {line}" for line in log.splitlines() if any(miss in line for miss in MISSES)]
    if numba_runs and HIT not in log:
        misses.append(f"{what} loaded nothing from numba's cache:\n{log[-3000:]}")
    return misses


# Training -----------------------------------------------------------------------------------------------------

def _training_files(folder: Path, job: Job, kind: str, labelled: bool, name: str = "train") -> tuple[Path, str]:
    """The job's rows as `kind` (csv, recordio, recordio-sparse, libsvm): the file and its content type."""
    x, y = images._data(job)
    label = y if labelled else None
    if kind == "csv":
        path = folder / f"{name}.csv"
        # Every field with an exponent, which np.loadtxt is never given for a job's first blocks
        # (common/data/csv_numpy.py), so the file is read by the kernel whose cache entries are under test.
        np.savetxt(path, np.column_stack([y, x]) if labelled else x, delimiter=",", fmt="%.17e")
        return path, f"{CSV};label_size=1" if labelled and not job.labelled else \
            job.content_type if job.content_type.startswith(CSV) else CSV
    if kind == "libsvm":
        path = folder / f"{name}.libsvm"
        path.write_text("".join(f"{int(t)} " + " ".join(f"{j}:{v:.6g}" for j, v in enumerate(row)) + "\n"
                                for t, row in zip(y, x)))
        return path, LIBSVM
    path = folder / f"{name}.rec"
    if kind == "recordio":
        path.write_bytes(encode_dense(x, label))
    else:
        sparse = sp.csr_matrix(np.where(np.abs(x) > 1.0, x, 0.0).astype(np.float32))
        path.write_bytes(encode_sparse(sparse, label))
    return path, RECORDIO


def _training_kinds(described: dict, job: Job) -> list[str]:
    """The data kinds the job's training channel takes, the one test_images.py trains from first."""
    channel = next(c for c in described["channels"] if c["Name"] == job.channel)
    types = channel["SupportedContentTypes"]
    kinds = (["csv"] if CSV in types else []) + (["recordio", "recordio-sparse"] if RECORDIO in types else []) \
        + (["libsvm"] if LIBSVM in types else [])
    first = "recordio" if job.content_type == RECORDIO else "csv"
    return [first] + [kind for kind in kinds if kind != first]


def _train(engine: list[str], image: str, base: Path) -> str:
    result = subprocess.run([*engine, "run", "--rm", *READ_ONLY, "-v", f"{base}:/opt/ml", image, "train"],
                            capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"training failed:\n{log[-5000:]}"
    return log


def _train_script(engine: list[str], image: str, base: Path) -> str:
    x = np.random.default_rng(0).normal(size=(80, SKLEARN_FEATURES))
    data = base.parent / "train.csv"
    np.savetxt(data, np.column_stack([x @ np.array([1.0, -2.0, 0.5]) + 3.0, x]), delimiter=",")
    write_job(base, {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": '"/opt/ml/code"'},
              {"train": ([data], CSV)})
    (base / "code").mkdir()
    (base / "code" / "train.py").write_text(TRAIN)
    log = _train(engine, image, base)
    (base / "model" / "code").mkdir()
    (base / "model" / "code" / "inference.py").write_text(INFERENCE)
    return log


@pytest.fixture(scope="module")
def trained(engine: list[str], image: str, name: str, described: dict,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The model of the first kind, and the log of each kind's training job."""
    logs, model = {}, None
    if name in SCRIPT_ONLY:
        base = tmp_path_factory.mktemp("script") / "opt_ml"
        logs["script"] = _train_script(engine, image, base)
        return base / "model", logs
    job = JOBS[name]
    for kind in _training_kinds(described, job):
        folder = tmp_path_factory.mktemp(kind)
        path, content_type = _training_files(folder, job, kind, job.labelled)
        channels = {job.channel: ([path], content_type)}
        if any(c["Name"] == "test" for c in described["channels"]):  # scoring runs the kernels serving runs
            path, content_type = _training_files(folder, job, kind, job.labelled or name in LABELLED_TEST, "test")
            channels["test"] = ([path], content_type)
        write_job(folder / "opt_ml", job.hyperparameters, channels)
        logs[kind] = _train(engine, image, folder / "opt_ml")
        model = model or folder / "opt_ml" / "model"
    return model, logs


def test_training_compiles_nothing(trained: tuple[Path, dict[str, str]], name: str) -> None:
    problems = [problem for kind, log in trained[1].items()
                for problem in _problems(log, f"training from {kind}", numba_runs=name not in NO_NUMBA_TRAINING)]
    if problems:
        pytest.fail("kernels the image's cache lacks (docker/warm_up.py, warm_up_kernels):\n" + "\n".join(problems))


# Serving ------------------------------------------------------------------------------------------------------

def _bodies(content_type: str, x: np.ndarray, script: bool) -> dict[str, bytes]:
    """Request bodies of one content type, by label: dense and, where the type has it, sparse (not for a
    script image, whose default input_fn reads JSON as one array)."""
    sparse = sp.csr_matrix(np.where(np.abs(x) > 1.0, x, 0.0).astype(np.float32))
    if content_type == CSV:
        return {"": "\n".join(",".join(f"{v:.6g}" for v in row) for row in x).encode()}
    if content_type == JSON:
        rows = {"": json.dumps(x.tolist()).encode()}
        if len(x) > 1 and not script:
            rows["features"] = json.dumps({"instances": [{"features": row} for row in x.tolist()]}).encode()
            rows["sparse"] = json.dumps({"instances": [
                {"data": {"features": {"keys": r.indices.tolist(), "shape": [x.shape[1]],
                                       "values": r.data.tolist()}}} for r in sparse]}).encode()
        return rows
    if content_type == JSONLINES:
        return {"": "\n".join(json.dumps({"features": row}) for row in x.tolist()).encode()}
    if content_type == RECORDIO:
        return {"": encode_dense(x), "float64": encode_dense(x.astype(np.float64)), "int32": encode_dense(
            x.astype(np.int32)), "sparse": encode_sparse(sparse)}
    if content_type == LIBSVM:
        return {"": "\n".join(" ".join(f"{j}:{v:.6g}" for j, v in enumerate(row)) for row in x).encode()}
    if content_type == NPY:
        buffer = io.BytesIO()
        np.save(buffer, x)
        return {"": buffer.getvalue()}
    raise AssertionError(f"the test has no body for {content_type}: add one")


@contextmanager
def _serving_read_only(engine: list[str], image: str, model_dir: Path) -> Iterator[tuple[str, str]]:
    """(url, container) of `serve` in a read-only container, once /ping answers 200."""
    container = subprocess.run([*engine, "run", "-d", *READ_ONLY, "-p", "127.0.0.1::8080",
                                "-v", f"{model_dir}:/opt/ml/model:ro", image, "serve"],
                               capture_output=True, text=True, check=True).stdout.strip()
    try:
        address = subprocess.run([*engine, "port", container, "8080/tcp"], capture_output=True, text=True,
                                 check=True).stdout.split()[0]
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"http://{address}/ping", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server never answered /ping:\n" + images._logs(engine, container))
            time.sleep(0.25)
        yield f"http://{address}", container
    finally:
        images._remove(engine, container)


def test_serving_compiles_nothing(engine: list[str], image: str, name: str, described: dict,
                                  trained: tuple[Path, dict[str, str]]) -> None:
    inference = described["inference"]
    features = SKLEARN_FEATURES if name in SCRIPT_ONLY else JOBS[name].features
    x = np.random.default_rng(3).normal(scale=3.0, size=(MANY, features)).astype(np.float32)
    accepts = list(inference["accept_types"])
    if name not in SCRIPT_ONLY:
        accepts.append(inference["default_accept"] + ";verbose=true")  # knn, rcf, tabular: more columns
    failures = []
    with _serving_read_only(engine, image, trained[0]) as (url, container):
        for content_type in inference["content_types"]:
            for rows in (x[:1], x):
                for label, body in _bodies(content_type, rows, name in SCRIPT_ONLY).items():
                    for accept in accepts:
                        answer = requests.post(url + "/invocations", data=body, timeout=60,
                                               headers={"Content-Type": content_type, "Accept": accept})
                        if answer.status_code != 200:
                            failures.append(f"{content_type} {label} ({len(rows)} rows) -> {accept}: "
                                            f"{answer.status_code} {answer.text[:200]}")
        log = images._logs(engine, container)
    assert not failures, "\n".join(failures)
    problems = _problems(log, "serving")
    if problems:
        pytest.fail("kernels the image's cache lacks (docker/warm_up.py, warm_up_kernels):\n" + "\n".join(problems))
