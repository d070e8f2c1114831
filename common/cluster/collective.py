"""Coordination between the hosts of one training job (docs/contract.md, "Several hosts").

`with connect(cluster) as collective:` gives the `Collective` of the hosts of a `Cluster`. One
host needs no network. Several use XGBoost's collective: the leader hosts[0] runs the tracker in
a child process, and each host joins with task id = its index in `hosts`, so rank == index even
when several local "hosts" share 127.0.0.1. The communicator lives on a private thread (see
_XGBoostThread), so xgboost.train() in the caller's thread does not see it: `collective.run(fn)` runs
fn there.

Environment, read when `connect` is called:
  ALGO_COLLECTIVE_PORT     the tracker's port on the leader (default 9099)
  ALGO_COLLECTIVE_TIMEOUT  seconds a host waits for a missing or silent peer (default 300). Each
                           call must finish within it, so it must exceed the longest time a host
                           computes between two calls (the others wait in the next call meanwhile)
  ALGO_HOST_ADDRESSES      JSON {"algo-1": "10.0.0.5", ...} used instead of DNS (local tests)

broadcast/allgather/gather pickle: use them for objects our own hosts made. Make calls one at a
time, the same calls with the same array shapes and dtypes in the same order on every host.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")

PORT_VAR, TIMEOUT_VAR, ADDRESSES_VAR = "ALGO_COLLECTIVE_PORT", "ALGO_COLLECTIVE_TIMEOUT", "ALGO_HOST_ADDRESSES"
DEFAULT_PORT, DEFAULT_TIMEOUT_S = 9099, 300.0
_DTYPES = frozenset(map(np.dtype, ("float32", "float64", "int8", "int16", "int32", "int64",
                                   "uint8", "uint16", "uint32", "uint64")))


class ClusterError(Exception):
    """A peer is missing, dead or unreachable, or the cluster description is wrong."""


@dataclass(frozen=True)
class Cluster:
    hosts: tuple[str, ...]
    current_host: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts", tuple(self.hosts))
        if not self.hosts or len(set(self.hosts)) != len(self.hosts) or self.current_host not in self.hosts:
            raise ClusterError(f"hosts must be distinct names including current_host {self.current_host!r}, "
                               f"got {list(self.hosts)}.")

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def world_size(self) -> int:
        return len(self.hosts)

    @property
    def leader(self) -> str:
        return self.hosts[0]

    @property
    def is_leader(self) -> bool:
        return self.current_host == self.leader

    @classmethod
    def from_resource_config(cls, path: Path) -> Cluster:
        """resourceconfig.json's hosts and current_host; a missing file means the single host algo-1."""
        if not path.exists():
            return cls(("algo-1",), "algo-1")
        try:
            config = json.loads(path.read_text())
            hosts, current = config["hosts"], config["current_host"]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ClusterError(f"Cannot read hosts and current_host from {path}: {exc!r}.") from None
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts) or not isinstance(current, str):
            raise ClusterError(f"{path}: hosts must be a list of names and current_host a name.")
        return cls(tuple(hosts), current)


class Collective:
    """The single host's collective, without network; `connect` gives a subclass for several."""

    def __init__(self, rank: int = 0, world_size: int = 1) -> None:
        self.rank, self.world_size, self.is_leader = rank, world_size, rank == 0

    def allreduce_sum(self, array: np.ndarray) -> np.ndarray:
        return self._allreduce(_checked(array), "SUM", "allreduce_sum")

    def allreduce_max(self, array: np.ndarray) -> np.ndarray:
        return self._allreduce(_checked(array), "MAX", "allreduce_max")

    def allreduce_min(self, array: np.ndarray) -> np.ndarray:
        return self._allreduce(_checked(array), "MIN", "allreduce_min")

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        """Rank `root`'s `obj` on every rank (the others' `obj` is ignored)."""
        self._check_root(root)
        return obj

    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's `obj` in rank order; sizes may differ between ranks."""
        return [obj]

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        """Every rank's `obj` in rank order on `root`, None elsewhere (all ranks receive it all)."""
        self._check_root(root)
        items = self.allgather(obj)
        return items if self.rank == root else None

    def barrier(self) -> None:
        self._allreduce(np.zeros(1, np.int32), "SUM", "barrier")

    def run(self, function: Callable[[], T]) -> T:
        """`function()` where XGBoost sees this collective (xgboost.train, DMatrix): here on one host,
        on the communicator's thread on several. Its exceptions come back as they are; a long call
        must call `alive()` at least every ALGO_COLLECTIVE_TIMEOUT s (a training callback does)."""
        return function()

    def alive(self) -> None:
        """Called from inside `run`: progress was made, so the watchdog's clock starts again."""

    def _allreduce(self, array: np.ndarray, op: str, what: str) -> np.ndarray:
        return array.copy()

    def _check_root(self, root: int) -> None:
        if not 0 <= root < self.world_size:
            raise ValueError(f"root must be a rank in 0..{self.world_size - 1}, got {root}.")


def _checked(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype not in _DTYPES:
        raise TypeError(f"Collective reductions take integer or float32/float64 arrays, got {array.dtype}.")
    return array
