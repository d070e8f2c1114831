"""`sm-local` (tools/local.py) as a user runs it: a fresh job folder each run, `--resume` to continue from a
checkpoint, clear errors for bad input, and stop signals passed on to the server it starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
from sklearn.datasets import make_blobs

from tests.integration.helpers import free_port
from tools.local import REPO
from tools.sm_local import main


def sm_local(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.sm_local", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def blobs_csv(path: Path, seed: int) -> Path:
    x, _ = make_blobs(n_samples=300, centers=3, n_features=4, random_state=seed)
    np.savetxt(path, x, fmt="%.5f", delimiter=",")
    return path


def train(job: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    return sm_local("train", "--algorithm", "kmeans", "--dir", str(job), "--channel", f"train={data}",
                    "--content-type", "train=text/csv", "--hp", "k=3", "--hp", "feature_dim=4", "--hp", "epochs=2",
                    *extra)


def test_each_run_prepares_the_job_folder_afresh(tmp_path: Path) -> None:
    job = tmp_path / "job"
    first, second = blobs_csv(tmp_path / "first.csv", seed=1), blobs_csv(tmp_path / "second.csv", seed=2)
    failed = train(job, first, "--hp", "mini_batch_size=0")
    assert failed.returncode == 1 and (job / "output" / "failure").is_file()
    done = train(job, first)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (job / "output" / "failure").exists()
    first_model = (job / "model" / "model_algo-1").read_bytes()

    again = train(job, second)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "removed input/, model/, checkpoints/ of the previous run" in again.stderr
    assert [p.name for p in (job / "input" / "data" / "train").iterdir()] == ["second.csv"]
    assert "Resuming" not in again.stdout
    assert (job / "model" / "model_algo-1").read_bytes() != first_model


def test_resume_continues_from_the_checkpoint_only_when_asked(tmp_path: Path) -> None:
    job, data = tmp_path / "job", blobs_csv(tmp_path / "data.csv", seed=1)
    assert train(job, data).returncode == 0
    resumed = train(job, data, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resuming from the checkpoint after epoch 1" in resumed.stdout
    assert "checkpoints/" not in resumed.stderr  # kept, not removed


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    return capsys.readouterr().err


def test_bad_input_is_refused_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = blobs_csv(tmp_path / "data.csv", seed=1)
    job = ["train", "--algorithm", "kmeans", "--dir", str(tmp_path / "job")]
    assert "--channel takes NAME=PATH" in refused(capsys, *job, "--channel", str(data))
    assert "no such file or folder (`sm-local sample-data`" in refused(capsys, *job, "--channel", "train=nope.csv")
    assert "--channel train is given twice" in refused(capsys, *job, "--channel", f"train={data}",
                                                       "--channel", f"train={data}")
    assert "--content-type names test, which no --channel gives" in refused(
        capsys, *job, "--channel", f"train={data}", "--content-type", "test=text/csv")
    assert "--hp takes KEY=VALUE; got 'k'" in refused(capsys, *job, "--channel", f"train={data}", "--hp", "k")
    assert "holds no checkpoint to resume from" in refused(capsys, *job, "--channel", f"train={data}", "--resume")
    assert "holds no model; train into --dir" in refused(capsys, "serve", "--algorithm", "kmeans",
                                                         "--dir", str(tmp_path / "job"))
    assert not (tmp_path / "job").exists()


def test_a_folder_that_is_not_a_job_folder_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = blobs_csv(tmp_path / "data.csv", seed=1)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.txt").write_text("not sm-local's")
    message = refused(capsys, "train", "--algorithm", "kmeans", "--dir", str(tmp_path), "--channel", f"train={data}")
    assert "holds model/ but is not a job folder (no input/config/)" in message
    assert (tmp_path / "model" / "mine.txt").read_text() == "not sm-local's"


def test_channel_data_inside_the_folder_to_clear_is_refused(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job"
    (job / "input" / "config").mkdir(parents=True)
    data = blobs_csv(job / "input" / "data.csv", seed=1)
    message = refused(capsys, "train", "--algorithm", "kmeans", "--dir", str(job), "--channel", f"train={data}")
    assert "is inside" in message and "keep the data elsewhere" in message
    assert data.is_file()


def test_sample_data_writes_csv_ready_to_train_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample-data", "digits", str(tmp_path / "new" / "digits.csv")]) == 0
    digits = np.loadtxt(tmp_path / "new" / "digits.csv", delimiter=",")
    assert digits.shape == (1797, 65) and set(np.unique(digits[:, 0])) == set(range(10))
    assert main(["sample-data", "series", str(tmp_path / "series.csv")]) == 0
    series = np.loadtxt(tmp_path / "series.csv")
    assert series.shape == (2000,) and int(np.argmax(series)) in (500, 1200, 1700)
    assert "wrote" in capsys.readouterr().out


@pytest.fixture(scope="module")
def trained_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sm-local-serve")
    result = train(folder / "job", blobs_csv(folder / "data.csv", seed=1))
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / "job"


def wait_for_ping(port: int, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"sm-local serve exited with {server.returncode}"
        try:
            if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("sm-local serve never answered /ping")


def port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_serve_stops_gunicorn_on_a_stop_signal(trained_job: Path, signum: int, status: int) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tools.sm_local", "serve", "--algorithm", "kmeans",
                               "--dir", str(trained_job), "--port", str(port)],
                              cwd=REPO, env=dict(os.environ, SAGEMAKER_MODEL_SERVER_WORKERS="2"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    family: list[psutil.Process] = []
    survivors: list[psutil.Process] = []
    try:
        wait_for_ping(port, server)
        family = psutil.Process(server.pid).children(recursive=True)
        assert len(family) == 3  # the entrypoint (gunicorn's arbiter) and its two workers
        server.send_signal(signum)
        output, _ = server.communicate(timeout=20)  # a graceful stop; gunicorn kills stragglers at 25 s
    finally:
        if server.poll() is None:
            server.kill()
        survivors = psutil.wait_procs(family, timeout=10)[1]
        for process in survivors:
            process.kill()  # the signal should have stopped it: never leave it behind
    assert server.returncode == status, output
    assert "Traceback" not in output
    assert port_is_closed(port)
    assert not survivors, f"still running after sm-local exited: {survivors}"
