"""Run a child process as the training toolkit does: stdout inherited untouched, stderr passed through as it
arrives (and its tail kept for the failure file), SIGTERM forwarded while it runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

TAIL_BYTES = 8192


def run(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """(exit code, last TAIL_BYTES of stderr); killed by signal N gives 128 + N, as a shell reports it."""
    sys.stdout.flush()
    sys.stderr.flush()
    forwarder = _SigtermForwarder()
    try:
        process = subprocess.Popen(command, cwd=cwd, env=env, stderr=subprocess.PIPE)
        forwarder.attach(process)
        tail = bytearray()
        pump = threading.Thread(target=_pass_through, args=(process.stderr, tail), daemon=True)
        pump.start()
        code = process.wait()
    finally:
        forwarder.restore()
    pump.join(timeout=5.0)  # a grandchild may still hold the pipe open: do not wait for it
    return (128 - code if code < 0 else code), bytes(tail).decode(errors="replace")


def _pass_through(stream: Any, tail: bytearray) -> None:
    out = getattr(sys.stderr, "buffer", None)
    for chunk in iter(lambda: stream.read1(1 << 16), b""):
        if out is not None:
            out.write(chunk)
            out.flush()
        else:
            sys.stderr.write(chunk.decode(errors="replace"))
        tail.extend(chunk)
        del tail[:-TAIL_BYTES]


class _SigtermForwarder:
    """SageMaker stops a job with SIGTERM to PID 1 (us): the child gets it, and decides what to do. One that
    arrives while the child starts is sent as soon as it exists. Signals reach the main thread only."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.pending: int | None = None
        self.installed = threading.current_thread() is threading.main_thread()
        self.previous = signal.signal(signal.SIGTERM, self._handle) if self.installed else None

    def _handle(self, signum: int, _frame: object) -> None:
        if self.process is not None:
            self.process.send_signal(signum)
        else:
            self.pending = signum

    def attach(self, process: subprocess.Popen) -> None:
        self.process = process
        if self.pending is not None:
            process.send_signal(self.pending)

    def restore(self) -> None:
        if self.installed:  # None: the previous handler was not set from Python
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)
