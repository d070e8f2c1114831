"""Several hosts on XGBoost's collective: the tracker, joining, the watchdog thread (see common/cluster/collective.py).

The leader runs `xgboost.tracker.RabitTracker` in a child process; every host joins with task id =
its index in `hosts`. Every XGBoost call runs on one private thread (its communicator is
thread-local) and the caller waits at most ALGO_COLLECTIVE_TIMEOUT + GRACE_S for it, counted for
`Collective.run` from the last `alive()` (a training call may take hours, a round must not).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from common.cluster.collective import ADDRESSES_VAR, PORT_VAR, TIMEOUT_VAR, Cluster, ClusterError, Collective
from common.imports import without

log = logging.getLogger(__name__)
T = TypeVar("T")
GRACE_S = 5.0  # how long past ALGO_COLLECTIVE_TIMEOUT the watchdog waits for XGBoost's own timeout
_connected = threading.Lock()  # one multi-host connect() at a time per process
_ROOT = str(Path(__file__).resolve().parents[1])


class _XGBoostCollective(Collective):
    def __init__(self, cluster: Cluster, timeout_s: float, thread: _XGBoostThread) -> None:
        super().__init__(cluster.rank, cluster.world_size)
        self.cluster, self.timeout_s, self.thread = cluster, timeout_s, thread
        self.failure: str | None = None  # after a failed call the communicator is unusable

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        from xgboost import collective as coll

        self._check_root(root)
        # In a tuple because XGBoost refuses to broadcast None.
        return self._call("broadcast", coll.broadcast, (obj,) if self.rank == root else None, root)[0]

    def allgather(self, obj: Any) -> list[Any]:
        # Two sums whatever the number of hosts: the sizes, then a byte buffer in which each
        # rank fills its own slice and leaves zeros elsewhere.
        data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
        sizes = np.zeros(self.world_size, np.int64)
        sizes[self.rank] = data.size
        sizes = self._allreduce(sizes, "SUM", "allgather")
        ends = np.cumsum(sizes)
        starts = ends - sizes
        buffer = np.zeros(int(ends[-1]), np.uint8)
        buffer[starts[self.rank]:ends[self.rank]] = data
        buffer = self._allreduce(buffer, "SUM", "allgather")
        return [pickle.loads(buffer[s:e].tobytes()) for s, e in zip(starts, ends, strict=True)]

    def _allreduce(self, array: np.ndarray, op: str, what: str) -> np.ndarray:
        from xgboost import collective as coll

        if array.size == 0:
            return array.copy()
        return self._call(what, coll.allreduce, array, coll.Op[op]).reshape(array.shape)

    def run(self, function: Callable[[], T]) -> T:
        if self.failure is not None:
            raise ClusterError(f"run after an earlier failure: {self.failure}")
        try:
            return self.thread.call(self.timeout_s + GRACE_S, function)
        except TimeoutError:
            self.failure = (f"{self.cluster.current_host} made no progress for {self.timeout_s + GRACE_S:g} s "
                            f"(rank {self.rank} of {self.world_size}): another host died or hung, or one step "
                            f"takes longer than {TIMEOUT_VAR}={self.timeout_s:g} s.")
            raise ClusterError(self.failure) from None
        except BaseException as exc:
            self.failure = f"{type(exc).__name__}: {exc}"  # the communicator's state is unknown now
            raise

    def alive(self) -> None:
        self.thread.touch()

    def _call(self, what: str, function: Callable[..., T], *args: Any) -> T:
        from xgboost.core import XGBoostError

        if self.failure is not None:
            raise ClusterError(f"{what} after an earlier failure: {self.failure}")
        deadline_s = self.timeout_s + GRACE_S
        try:
            return self.thread.call(deadline_s, function, *args)
        except XGBoostError as exc:
            reason = f"XGBoost said: {_reason(exc)}"
        except TimeoutError:
            reason = f"XGBoost did not return within {deadline_s:g} s (a host dying during a call can hang it)."
        others = ", ".join(h for h in self.cluster.hosts if h != self.cluster.current_host)
        self.failure = (
            f"{what} failed on {self.cluster.current_host} (rank {self.rank} of {self.world_size}): another host "
            f"({others}) exited, failed or did not answer within {TIMEOUT_VAR}={self.timeout_s:g} s. The first "
            f"error in those hosts' logs is the cause; if one was only slow, raise {TIMEOUT_VAR}. {reason}")
        raise ClusterError(self.failure)


class _XGBoostThread:
    """The one thread that makes a connection's XGBoost calls (its communicator is thread-local),
    with a watchdog. XGBoost 3.2 times out on a silent peer, but when a peer dies in the middle of
    an allreduce it sometimes waits forever (its event loop stops while the caller still waits on
    it: 1 kill in 10 here), so callers wait for a deadline, then give the thread up for lost."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.stuck = False
        self._beat = time.monotonic()  # the deadline counts from the call's start or its last touch()
        threading.Thread(target=self._serve, name="xgboost-collective", daemon=True).start()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            call()

    def call(self, deadline_s: float, function: Callable[..., T], *args: Any) -> T:
        if self.stuck:
            raise TimeoutError("an earlier call never returned")
        done, outcome = threading.Event(), []

        def run() -> None:
            try:
                outcome.append((True, function(*args)))
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                outcome.append((False, exc))
            done.set()

        self._beat = time.monotonic()
        self._calls.put(run)
        while not done.wait(max(0.0, self._beat + deadline_s - time.monotonic())):
            if time.monotonic() - self._beat >= deadline_s:
                self.stuck = True
                raise TimeoutError(f"no answer within {deadline_s:g} s")
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def touch(self) -> None:
        """From the running call (e.g. once per boosting round): it is alive, restart the deadline."""
        self._beat = time.monotonic()

    def close(self) -> None:
        self._calls.put(None)


@contextlib.contextmanager
def connect_hosts(cluster: Cluster, port: int, timeout_s: float) -> Iterator[Collective]:
    if not _connected.acquire(blocking=False):
        raise ClusterError("connect() is already open in this process; XGBoost's collective is process-wide.")
    thread = _XGBoostThread()
    try:
        leader_address = _address(cluster.leader, timeout_s)
        with without("sklearn", "pandas"):  # as for the tracker: unless the caller imported xgboost already
            import xgboost.collective  # noqa: F401 - takes a second or more: not between tracker start and joining

        tracker = _Tracker(leader_address, port, cluster, timeout_s) if cluster.is_leader else None
        clean = False
        try:
            if tracker is None:
                _wait_for_tracker(cluster, leader_address, port, timeout_s)
            collective = _join(cluster, leader_address, port, timeout_s, thread)
            try:
                yield collective
                clean = collective.failure is None
            finally:
                _finalize(cluster, thread, clean, timeout_s)
        finally:
            if tracker is not None:
                tracker.stop(timeout_s if clean else 0.0)
    finally:
        thread.close()
        _connected.release()


def _join(cluster: Cluster, address: str, port: int, timeout_s: float, thread: _XGBoostThread) -> _XGBoostCollective:
    from xgboost import collective as coll
    from xgboost.core import XGBoostError

    def init() -> tuple[int, int]:
        # Zero-padded task ids sort in rank order (sortby="task"). One connect attempt: the tracker
        # is known to listen, peers listen before they register, and with the leader gone more
        # attempts (with back-off) would only stretch finalize().
        coll.init(dmlc_communicator="rabit", dmlc_tracker_uri=address, dmlc_tracker_port=port,
                  dmlc_task_id=f"{cluster.rank:06d}", dmlc_timeout=math.ceil(timeout_s), dmlc_retry=1)
        return coll.get_rank(), coll.get_world_size()

    try:  # the leader's bootstrap waits up to the timeout for the last host, then ring connections
        joined = thread.call(2 * timeout_s + GRACE_S, init)
    except (XGBoostError, TimeoutError) as exc:
        _finalize(cluster, thread, False, timeout_s)
        raise ClusterError(
            f"{cluster.current_host} could not form the collective of {list(cluster.hosts)} within "
            f"{TIMEOUT_VAR}={timeout_s:g} s: not every host joined the tracker on {cluster.leader} at "
            f"{address}:{port}. Check that every host started, runs the same algorithm and can reach "
            f"{cluster.leader} on that port ({PORT_VAR}). XGBoost said: {_reason(exc)}") from None
    if joined != (cluster.rank, cluster.world_size):
        _finalize(cluster, thread, False, timeout_s)
        raise ClusterError(f"{cluster.current_host} expected rank {cluster.rank} of {cluster.world_size}, the tracker "
                           f"at {address}:{port} gave {joined[0]} of {joined[1]}: does another job use {PORT_VAR}?")
    log.info("Joined the collective as rank %d of %d.", cluster.rank, cluster.world_size)
    return _XGBoostCollective(cluster, timeout_s, thread)


def _finalize(cluster: Cluster, thread: _XGBoostThread, clean: bool, timeout_s: float) -> None:
    """Leave the communicator, even after a failure (one left open crashed the interpreter at exit).

    Signing off with the tracker takes one connect attempt, of up to ALGO_COLLECTIVE_TIMEOUT if
    the leader vanished without a trace. A stuck thread is left alone: it would never answer.
    """
    from xgboost import collective as coll
    from xgboost.core import XGBoostError

    if thread.stuck:
        return
    try:
        thread.call(timeout_s + GRACE_S, coll.finalize)
    except (XGBoostError, TimeoutError) as exc:
        if clean:
            raise ClusterError(f"{cluster.current_host} could not sign off with the tracker on {cluster.leader}: "
                               f"{_reason(exc)}") from None
        log.warning("Leaving the collective after a failure: %s", _reason(exc))


class _Tracker:
    """RabitTracker in a child process of the leader: a C++ exception in the tracker's threads
    (seen when a late host connects after the others gave up) calls std::terminate, which must
    not take the leader's interpreter, and its failure report, down with it."""

    def __init__(self, address: str, port: int, cluster: Cluster, timeout_s: float) -> None:
        # Twice the hosts' timeout: they, not the tracker, should report a missing peer.
        args = (address, port, cluster.world_size, 2 * math.ceil(timeout_s))
        code = (f"import sys; sys.path.insert(0, {_ROOT!r}); import common.cluster.xgboost_backend as x; "
                f"x._serve_tracker{args}")
        self._proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
        answer = "no answer"
        if select.select([self._proc.stdout], [], [], timeout_s)[0]:
            answer = self._proc.stdout.readline().strip() or "it exited"  # type: ignore[union-attr]
        if answer != "tracker ready":
            self.stop(0.0)
            raise ClusterError(f"{cluster.leader} could not start the collective tracker on {address}:{port} (is the "
                               f"port in use? {PORT_VAR} sets it): {answer}")

    def stop(self, wait_s: float) -> None:
        """Give every host `wait_s` to sign off, then make sure the tracker is gone."""
        try:
            self._proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            if wait_s > 0:
                log.warning("The collective tracker still waited for hosts to sign off after %g s.", wait_s)
            self._proc.kill()
            self._proc.wait()
        finally:
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()


def _serve_tracker(address: str, port: int, workers: int, timeout_s: int) -> None:
    """The tracker's process: says when it listens; ends when the hosts are done, or the leader is."""
    with without("sklearn", "pandas"):
        import xgboost
        from xgboost.tracker import RabitTracker

    xgboost.set_config(verbosity=0)  # else it warns about each host's readiness probe (_wait_for_tracker)
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(3)), daemon=True).start()  # EOF: leader gone
    try:
        tracker = RabitTracker(n_workers=workers, host_ip=address, port=port, sortby="task", timeout=timeout_s)
        tracker.start()
        print("tracker ready", flush=True)
        tracker.wait_for()
    except Exception as exc:  # noqa: BLE001 - reported to the leader, which decides
        print("tracker failed:", _reason(exc), flush=True)
        os._exit(1)
    os._exit(0)  # not through RabitTracker.__del__, which raises after a failed job


def _wait_for_tracker(cluster: Cluster, address: str, port: int, timeout_s: float) -> None:
    # Our own probe with fresh sockets: XGBoost's connect retries reuse a socket whose connect
    # failed (ECONNABORTED) and back off 2, 4, 6... s, long enough for the other hosts to give up.
    try:
        _retry(lambda: socket.create_connection((address, port), timeout=min(5.0, timeout_s)).close(), timeout_s, 0.2)
    except OSError as exc:
        raise ClusterError(
            f"{cluster.current_host} waited {TIMEOUT_VAR}={timeout_s:g} s for the leader {cluster.leader} to open "
            f"the collective tracker at {address}:{port} ({exc}). Check that {cluster.leader} started, runs the "
            f"same algorithm and is reachable on that port ({PORT_VAR}).") from None


def _address(host: str, timeout_s: float) -> str:
    """`host`'s IP address from ALGO_HOST_ADDRESSES, else from DNS, retried (SageMaker's may lag)."""
    raw = os.environ.get(ADDRESSES_VAR, "").strip()
    if raw:
        try:
            return str(json.loads(raw)[host])
        except (ValueError, KeyError, TypeError):
            raise ClusterError(f"{ADDRESSES_VAR} must be a JSON object with an address for {host!r}, "
                               f"got {raw!r}.") from None
    try:
        return _retry(lambda: socket.gethostbyname(host), timeout_s, 1.0)
    except OSError as exc:
        raise ClusterError(f"Cannot resolve the host name {host!r} after {timeout_s:g} s ({exc}); "
                           f"{TIMEOUT_VAR} sets the wait, {ADDRESSES_VAR} can give addresses.") from None


def _retry(attempt: Callable[[], T], timeout_s: float, pause_s: float) -> T:
    """`attempt()` until it raises no OSError, for up to `timeout_s`; then its last OSError."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return attempt()
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(pause_s)


def _reason(exc: Exception) -> str:
    """XGBoost's error chain ('- [file:line|time]: message' lines) without its stack trace."""
    reasons = [line.split("]: ", 1)[1] for line in str(exc).splitlines() if line.startswith("- [") and "]: " in line]
    return "; ".join(reasons) or str(exc).splitlines()[0]
