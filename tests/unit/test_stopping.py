"""common.stopping (SIGTERM: Stopped, deferred, the watcher, the failure message) and the checkpoint bookkeeping
it reads (common.checkpoints: progress, state matching, pruning, `due`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.checkpoints import Checkpoints, job_state
from tools.local import REPO

STOP_LIMIT_S = 2.0
# Sets up a job directory, then waits for SIGTERM in the way argv[2] names.
SCRIPT = """
import sys, time
from pathlib import Path
import numpy as np
from common import stopping
from common.checkpoints import Checkpoints
from common.paths import Paths

base, mode = Path(sys.argv[1]), sys.argv[2]
stopping.install()
checkpoints = Checkpoints(base / "checkpoints")
if "--saved" in sys.argv:
    checkpoints.save(3, {"w": np.zeros(2)}, {}, progress="epoch 3 of 10")
stopping.register(Paths(base), checkpoints)
if "--keep-model" in sys.argv:
    stopping.on_stop(lambda: 0)
try:
    print("ready", flush=True)
    if mode == "python":
        while True:
            time.sleep(0.01)
    with stopping.deferred():
        if mode == "blocked":  # stands for a long C call: the handler runs, the sleep goes on
            time.sleep(60)
        while not stopping.requested():
            time.sleep(0.01)
        if mode == "keyboard":  # what CatBoost makes of an exception raised by a signal handler
            raise KeyboardInterrupt
        time.sleep(0.2)
        stopping.check()
except stopping.Stopped:
    stopping.exit_now(stopping.finish())
"""


def _stop(tmp_path: Path, mode: str, *flags: str) -> tuple[int, float, str]:
    """(exit code, seconds from SIGTERM to exit, output) of SCRIPT in `mode`."""
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), mode, *flags], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    output = process.communicate(timeout=30)[0]
    return process.returncode, time.monotonic() - signalled, output


@pytest.mark.parametrize("mode", ["python", "deferred", "blocked", "keyboard"])
def test_sigterm_writes_the_failure_file_and_exits_143_within_2_s(tmp_path: Path, mode: str) -> None:
    code, seconds, output = _stop(tmp_path, mode, "--saved")
    assert (code, "Traceback" in output) == (143, False), output
    assert seconds < STOP_LIMIT_S
    assert (tmp_path / "output" / "failure").read_text() == (
        f"Training stopped by SIGTERM after epoch 3 of 10; checkpoint saved to "
        f"{tmp_path / 'checkpoints' / 'checkpoint-00000003.npz'}, a job restarted with the same checkpoint "
        "location resumes from it.")


def test_before_any_checkpoint_the_message_says_there_is_nothing_to_resume(tmp_path: Path) -> None:
    code, _, output = _stop(tmp_path, "python")
    assert code == 143, output
    assert (tmp_path / "output" / "failure").read_text() == \
        "Training stopped by SIGTERM before the first checkpoint; nothing to resume from."


def test_an_on_stop_action_replaces_the_failure_file(tmp_path: Path) -> None:
    code, seconds, output = _stop(tmp_path, "blocked", "--keep-model")
    assert code == 0 and seconds < STOP_LIMIT_S, output
    assert not (tmp_path / "output" / "failure").exists()


def test_checkpoints_remember_progress_and_resume_only_a_matching_state(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path)
    assert checkpoints.last_path is None
    path = checkpoints.save(4, {"w": np.arange(3.0)}, {"state": ["a", 1, (2, 3)]}, progress="pass 5 of 8")
    assert (checkpoints.last_path, checkpoints.last_progress) == (path, "pass 5 of 8")
    again = Checkpoints(tmp_path)
    assert again.latest(["a", 1, (2, 4)]) is None and again.last_path is None
    arrays, meta = again.latest(["a", 1, (2, 3)])  # tuples compare as the JSON lists they were saved as
    assert arrays["w"].tolist() == [0, 1, 2] and meta["step"] == 4
    assert (again.last_path, again.last_progress) == (path, "pass 5 of 8")


def test_pruning_orders_by_number_and_leaves_another_jobs_later_checkpoints(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path, keep=2)
    checkpoints.save(1_000_000_000, {}, {"state": "other job"})
    for step in (9, 99_999_999, 100_000_000):
        checkpoints.save(step, {}, {"state": "this job"})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint-100000000.npz", "checkpoint-1000000000.npz", "checkpoint-99999999.npz"]
    assert Checkpoints(tmp_path).latest("this job")[1]["step"] == 100_000_000


def test_due_waits_the_interval_after_each_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Checkpoints, "INTERVAL_S", 0.0)
    checkpoints = Checkpoints(tmp_path)
    assert checkpoints.due()
    monkeypatch.setattr(Checkpoints, "INTERVAL_S", 3600.0)
    checkpoints.save(1, {}, {})
    assert not checkpoints.due() and not Checkpoints(tmp_path).due()


def test_job_state_holds_every_hyperparameter() -> None:
    from algorithms.kmeans.hyperparameters import KMeansHyperparameters
    from common.hyperparameters import parse_hyperparameters

    hp = parse_hyperparameters(KMeansHyperparameters, {"k": "3", "feature_dim": "2"})
    state = job_state(hp, 0, 1)
    assert state[0]["k"] == 3 and state[0]["feature_dim"] == 2 and state[1:] == [0, 1]
