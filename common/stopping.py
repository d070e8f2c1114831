"""Stopping a training job on SIGTERM (SageMaker's StopTrainingJob and spot interruption; SIGKILL follows 120 s later).

The handler raises `Stopped` in the main thread; `run_training` turns it into `output/failure` naming the
last checkpoint, and the process exits with 143 (128 + SIGTERM). A C library that calls back into Python
would swallow that exception (LightGBM's ctypes log callback) or turn it into KeyboardInterrupt (CatBoost's
interrupt check), so inside `deferred()` the handler only records the signal and the algorithm's
per-iteration callback calls `check()` once its checkpoint is safe. A watcher thread wakes on the signal even
while the main thread is inside C code (which releases the GIL); if the process is still there GRACE_S later,
it writes the failure file itself and exits.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from common.paths import Paths

log = logging.getLogger(__name__)
EXIT_CODE = 128 + signal.SIGTERM
GRACE_S = 1.5


class Stopped(BaseException):
    """SIGTERM arrived. A BaseException, so that an algorithm's `except Exception` lets it through."""


class Noted(Protocol):
    """What the failure message names of the job's checkpoints (common.checkpoints.Checkpoints)."""

    last_path: Path | None
    last_progress: str | None


class _State:
    requested = False
    deferred = 0
    paths: Paths | None = None
    checkpoints: Noted | None = None
    on_stop: Callable[[], int] | None = None
    code: int | None = None
    lock = threading.Lock()
    installed = False


def install() -> None:
    """From the main thread, before training starts: the handler and the watcher."""
    if _State.installed:
        return
    _State.installed = True
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, _handle)
    threading.Thread(target=_watch, args=(read_fd,), name="sigterm-watcher", daemon=True).start()


def register(paths: Paths, checkpoints: Noted | None = None) -> None:
    """The job's files: where the failure file goes, and the checkpoints its message names."""
    _State.paths, _State.checkpoints, _State.on_stop = paths, checkpoints, None


def on_stop(action: Callable[[], int] | None) -> None:
    """Replace what a stop leaves behind: `action()` runs once instead of writing the failure file and returns
    the exit code (XGBoost's save_model_on_termination keeps the model and exits 0). None: the default."""
    _State.on_stop = action


def requested() -> bool:
    return _State.requested


def check() -> None:
    """Raise Stopped if SIGTERM has arrived: for callbacks inside `deferred()`, at a safe point."""
    if _State.requested:
        raise Stopped


@contextmanager
def deferred() -> Iterator[None]:
    """Around a C library that calls back into Python: the signal is only recorded, `check()` raises it; a stop
    still pending when the block ends is raised then."""
    _State.deferred += 1
    try:
        yield
    except KeyboardInterrupt:
        if _State.requested:  # CatBoost reports any exception from a signal handler as KeyboardInterrupt
            raise Stopped from None
        raise
    finally:
        _State.deferred -= 1
    check()


def message() -> str:
    checkpoints = _State.checkpoints
    if checkpoints is None or checkpoints.last_path is None:
        return "Training stopped by SIGTERM before the first checkpoint; nothing to resume from."
    return (f"Training stopped by SIGTERM after {checkpoints.last_progress}; checkpoint saved to "
            f"{checkpoints.last_path}, a job restarted with the same checkpoint location resumes from it.")


def finish() -> int:
    """What a stop leaves behind, done once whichever thread gets here first: the exit code."""
    with _State.lock:
        if _State.code is None:
            _State.code = _State.on_stop() if _State.on_stop is not None else _write_failure()
        return _State.code


def exit_now(code: int) -> None:
    """End the process without interpreter shutdown, which may wait on library threads."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _write_failure() -> int:
    text, paths = message(), _State.paths or Paths.from_env()
    try:  # the file first: logging can block on a full stdout pipe
        paths.write_failure(text)
    except OSError as exc:
        log.error("Could not write %s: %s", paths.failure, exc)
    log.error("%s", text)
    return EXIT_CODE


def _handle(_signum: int, _frame: object) -> None:
    if _State.requested:
        return  # a second SIGTERM must not interrupt the unwinding of the first
    _State.requested = True
    if not _State.deferred:
        raise Stopped


def _watch(read_fd: int) -> None:
    while True:
        received = os.read(read_fd, 64)
        # xgboost's script mode forwards SIGTERM to the user's script with a handler of its own: not ours to end.
        if signal.SIGTERM in received and signal.getsignal(signal.SIGTERM) is _handle:
            break
    log.info("SIGTERM received: stopping training.")
    time.sleep(GRACE_S)
    exit_now(finish())
