"""SIGTERM during `python -m common.entrypoint train`, then a restart: every algorithm writes one sentence to
output/failure, exits 143 within 2 s without a traceback, and the restarted job resumes from its checkpoint
and ends with the model an uninterrupted job trains.

The stopped run slows its checkpoints down (a sitecustomize.py that makes `Checkpoints.note` sleep and
`Checkpoints.INTERVAL_S` zero) so that the signal reliably arrives mid-training; the other runs are plain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from common.algorithm import load_algorithm
from common.data.batch import Batch
from common.data.recordio_writer import encode_dense
from common.serving.request import Options
from tests.integration.helpers import train
from tools.local import entrypoint_env, write_job

SLOW_CHECKPOINTS = """
import time
from common.checkpoints import Checkpoints
Checkpoints.INTERVAL_S = 0.0
_note = Checkpoints.note
def _slow_note(self, path, progress):
    _note(self, path, progress)
    time.sleep(0.3)
Checkpoints.note = _slow_note
"""
STOP_LIMIT_S = 2.0
X, LABELS = make_blobs(n_samples=2000, centers=4, n_features=4, random_state=3)
X = X.astype(np.float32)


@dataclass
class Case:
    algorithm: str
    hyperparameters: dict[str, str]
    data: str = "csv"                 # csv: features only; labelled: label first; recordio: labelled recordIO
    files: int = 1
    content_type: str = "text/csv"
    channel: str = "train"
    saved: str = "checkpoint-*.npz"   # what the stopped run must have written before it is stopped
    extra: dict[str, str] = field(default_factory=dict)


CASES = {
    "kmeans": Case("kmeans", {"k": "4", "feature_dim": "4", "mini_batch_size": "200", "epochs": "8"}),
    "pca-regular": Case("pca", {"feature_dim": "4", "num_components": "2", "mini_batch_size": "100",
                                "algorithm_mode": "regular"}, files=8),
    "pca-randomized": Case("pca", {"feature_dim": "4", "num_components": "1", "extra_components": "1",
                                   "mini_batch_size": "100", "algorithm_mode": "randomized"}),
    "knn": Case("knn", {"k": "3", "feature_dim": "4", "sample_size": "300", "predictor_type": "classifier",
                        "mini_batch_size": "100"}, data="labelled", content_type="text/csv;label_size=1"),
    "rcf": Case("rcf", {"feature_dim": "4", "num_trees": "50", "num_samples_per_tree": "16",
                        "mini_batch_size": "100"}, files=10),
    "fm": Case("fm", {"feature_dim": "4", "num_factors": "2", "predictor_type": "regressor", "epochs": "8",
                      "mini_batch_size": "100"}, data="recordio", content_type="application/x-recordio-protobuf"),
    "xgboost": Case("xgboost", {"num_round": "12", "objective": "multi:softprob", "num_class": "4"},
                    data="labelled", saved="xgboost-checkpoint.*"),
    # Bagging and feature_fraction are off: LightGBM reseeds their samplers when training restarts.
    "lightgbm": Case("lightgbm", {"num_boost_round": "25", "learning_rate": "0.05", "bagging_fraction": "1.0",
                                  "feature_fraction": "1.0", "early_stopping_rounds": "5"}, data="labelled"),
    "catboost": Case("catboost", {"iterations": "25", "learning_rate": "0.1", "verbose": "5"}, data="labelled",
                     channel="training", saved="catboost/snapshot"),
}


def _job(tmp: Path, name: str, case: Case) -> Path:
    files = []
    for i, (x, y) in enumerate(zip(np.array_split(X, case.files), np.array_split(LABELS, case.files))):
        path = tmp / f"part-{i}.{'rec' if case.data == 'recordio' else 'csv'}"
        if case.data == "recordio":
            path.write_bytes(encode_dense(x, y.astype(np.float32)))
        else:
            np.savetxt(path, x if case.data == "csv" else np.column_stack([y, x]), delimiter=",", fmt="%.6g")
        files.append(path)
    base = tmp / name
    write_job(base, case.hyperparameters, {case.channel: (files, case.content_type)})
    checkpoints = base / "checkpoints"
    (base / "input" / "config" / "checkpointconfig.json").write_text(json.dumps({"LocalPath": str(checkpoints)}))
    return base


def _stopped_run(tmp: Path, base: Path, case: Case) -> tuple[subprocess.CompletedProcess, float]:
    """Train with slow checkpoints, SIGTERM once one is saved: (the run, seconds from signal to exit)."""
    hook = tmp / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SLOW_CHECKPOINTS)
    env = entrypoint_env(case.algorithm, base)
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env["PYTHONPATH"]])
    process = subprocess.Popen([sys.executable, "-m", "common.entrypoint", "train"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((base / "checkpoints").glob(case.saved)):
        assert process.poll() is None, "training ended before a checkpoint: " + "".join(process.communicate())
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), time.monotonic() - signalled


def _model(algorithm: str, base: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The model's exported arrays, and its predictions for the training rows."""
    model = load_algorithm(algorithm).load(base / "model")
    width = getattr(model, "num_features", getattr(model, "feature_dim", X.shape[1]))
    predictions = {} if algorithm == "xgboost" else model.predict(Batch(X[:, :width]), Options())
    return model.export(), predictions


@pytest.mark.slow  # three trainings per image, with slowed checkpoints: make test-slow
@pytest.mark.parametrize("name", list(CASES))
def test_sigterm_writes_the_failure_file_and_a_restart_resumes_to_the_same_model(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    reference = _job(tmp_path, "reference", case)
    done = train(case.algorithm, reference)
    assert done.returncode == 0, done.stdout + done.stderr

    base = _job(tmp_path, "stopped", case)
    stopped, exit_s = _stopped_run(tmp_path, base, case)
    output = stopped.stdout + stopped.stderr
    print(f"{name}: exited {exit_s:.2f} s after SIGTERM")
    assert stopped.returncode == 128 + signal.SIGTERM, output
    assert exit_s < STOP_LIMIT_S, output
    assert "Traceback" not in output and "Exception ignored" not in output, output
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith("Training stopped by SIGTERM after "), failure
    assert f"checkpoint saved to {base / 'checkpoints'}" in failure, failure
    assert failure.endswith("a job restarted with the same checkpoint location resumes from it."), failure
    assert not (base / "model").exists() or not any((base / "model").iterdir())

    (base / "output" / "failure").unlink()
    resumed = train(case.algorithm, base)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resuming from" in resumed.stdout + resumed.stderr
    (arrays, predictions), (expected_arrays, expected_predictions) = _model(case.algorithm, base), \
        _model(case.algorithm, reference)
    _assert_same(arrays, expected_arrays)
    _assert_same(predictions, expected_predictions)


def test_xgboost_save_model_on_termination_keeps_the_last_round_and_exits_0(tmp_path: Path) -> None:
    case = Case("xgboost", {"num_round": "12", "objective": "multi:softprob", "num_class": "4",
                            "save_model_on_termination": "true"}, data="labelled", saved="xgboost-checkpoint.*")
    base = _job(tmp_path, "stopped", case)
    (base / "model").mkdir()
    (base / "model" / "leftover.txt").write_text("not a model")
    stopped, exit_s = _stopped_run(tmp_path, base, case)
    assert stopped.returncode == 0 and exit_s < STOP_LIMIT_S, stopped.stdout + stopped.stderr
    assert "Traceback" not in stopped.stdout + stopped.stderr
    assert not (base / "output" / "failure").exists()
    assert [p.name for p in (base / "model").iterdir()] == ["xgboost-model"]
    assert load_algorithm("xgboost").load(base / "model").export()


def _assert_same(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for key in expected:
        if key == "model_dump":  # CatBoost's names the job's snapshot file and a fresh model_guid
            actual_dump, expected_dump = json.loads(str(actual[key])), json.loads(str(expected[key]))
            actual_dump.pop("model_info", None)
            expected_dump.pop("model_info", None)
            assert actual_dump == expected_dump
        else:
            np.testing.assert_array_equal(np.asarray(actual[key]), np.asarray(expected[key]), err_msg=key)


def test_stopped_before_the_first_checkpoint_says_there_is_nothing_to_resume(tmp_path: Path) -> None:
    base = tmp_path / "ml"
    write_job(base, CASES["kmeans"].hyperparameters, {"train": ([], "text/csv")}, input_mode="Pipe")
    (base / "input" / "data").mkdir(parents=True)
    os.mkfifo(base / "input" / "data" / "train_0")  # nobody writes: training waits in open()
    process = subprocess.Popen([sys.executable, "-m", "common.entrypoint", "train"],
                               env=entrypoint_env("kmeans", base), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    for line in iter(process.stdout.readline, ""):
        if "Final configuration" in line:
            break
    time.sleep(0.5)  # on to the FIFO's open()
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 128 + signal.SIGTERM and time.monotonic() - signalled < STOP_LIMIT_S, output
    assert "Traceback" not in output, output
    assert (base / "output" / "failure").read_text() == \
        "Training stopped by SIGTERM before the first checkpoint; nothing to resume from."
