"""Run checks in a child process, so that a segfault, an abort or a hang in a numba kernel is reported as a
failure naming its input instead of ending the test run.

`Isolated().call(function, *args)` runs `function(*args)` in a long-lived spawned child and returns its result.
The function must be importable by name (module-level) and its arguments and result picklable. When the child
dies or runs past `timeout` seconds, `call` raises `ChildDied` and the next call starts a fresh child.
"""

from __future__ import annotations

import importlib
import multiprocessing
import signal
import traceback
from collections.abc import Callable
from typing import Any


class ChildDied(AssertionError):
    """The child process crashed (signal or exit) or hung while running a check."""


def _serve(connection: Any) -> None:
    """The child's loop: (module, name, args) in, ("ok", result) or ("raised", traceback) out."""
    while True:
        try:
            module, name, args = connection.recv()
        except EOFError:
            return
        try:
            result = ("ok", getattr(importlib.import_module(module), name)(*args))
        except BaseException:  # noqa: BLE001 - every exception goes back to the parent, which judges it
            result = ("raised", traceback.format_exc())
        connection.send(result)


class Isolated:
    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._connection: Any = None

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """function(*args) in the child; an exception raised there comes back as AssertionError with its traceback."""
        if self._process is None or not self._process.is_alive():
            self._start()
        try:
            self._connection.send((function.__module__, function.__name__, args))
            if not self._connection.poll(self.timeout):
                self._process.kill()
                self._process.join()
                raise ChildDied(f"the child hung for more than {self.timeout:.0f} s")
            status, value = self._connection.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._process.join(5)
            raise ChildDied(f"the child process died: {_describe_exit(self._process.exitcode)}") from None
        if status == "raised":
            raise AssertionError("the check raised in the child:\n" + value)
        return value

    def _start(self) -> None:
        self.close()
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child,), daemon=True)
        self._process.start()
        child.close()
        self._connection = parent

    def close(self) -> None:
        if self._process is not None:
            self._connection.close()
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._process = self._connection = None

    def __enter__(self) -> Isolated:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
