"""A bounded uniform sample of the training rows, kept during the first pass and merged across hosts.

Each row offered gets a uniform random key and the sample is the `capacity` rows with the lowest
keys: a uniform sample without replacement of every row seen. Hosts draw their keys from their own
streams, so the lowest keys of the union of their samples are a uniform sample of all the hosts'
rows, the same whatever order the samples are combined in.
"""

from __future__ import annotations

import numpy as np

from common.cluster.collective import Collective

SAMPLE_ROWS = 20_000
SAMPLE_BYTES = 32 << 20  # of float32 rows; wide rows keep fewer


def sample_capacity(feature_dim: int) -> int:
    return max(1, min(SAMPLE_ROWS, SAMPLE_BYTES // (4 * feature_dim)))


class RowSample:
    def __init__(self, capacity: int, feature_dim: int, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self.rng = rng
        self.rows = np.empty((0, feature_dim), np.float32)
        self.keys = np.empty(0)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._threshold = np.inf  # the highest key kept once full: rows above it can never enter

    def offer(self, x: np.ndarray) -> None:
        keys = self.rng.random(len(x))
        entering = keys < self._threshold
        if not entering.any():
            return
        self._pending.append((np.asarray(x[entering], np.float32), keys[entering]))
        self._pending_rows += int(entering.sum())
        if self._pending_rows >= max(self.capacity // 4, 1):
            self._compact()

    def held_rows(self) -> int:
        """Rows in memory now, the pending ones included: at most 1.25 x capacity plus one batch."""
        return len(self.rows) + self._pending_rows

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """The sampled rows and their keys, lowest key first."""
        self._compact()
        order = np.argsort(self.keys, kind="stable")
        return self.rows[order], self.keys[order]

    def _compact(self) -> None:
        rows = np.concatenate([self.rows, *(r for r, _ in self._pending)])
        keys = np.concatenate([self.keys, *(k for _, k in self._pending)])
        self._pending, self._pending_rows = [], 0
        if len(keys) > self.capacity:
            kept = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            rows, keys = rows[kept], keys[kept]
        if len(keys) == self.capacity:
            self._threshold = float(keys.max())
        self.rows, self.keys = rows, keys


def merge_hosts(collective: Collective, rows: np.ndarray, keys: np.ndarray, capacity: int) -> np.ndarray | None:
    """The `capacity` lowest-keyed rows of every host's sample, lowest key first, on the leader (None elsewhere).

    Only the keys travel to every host; each host then sends just its rows that made the cut."""
    every_key = np.concatenate(collective.allgather(keys))
    cut = np.inf if len(every_key) <= capacity else float(np.partition(every_key, capacity - 1)[capacity - 1])
    mine = keys <= cut
    gathered = collective.gather((rows[mine], keys[mine]), root=0)
    if gathered is None:
        return None
    merged_rows = np.concatenate([r for r, _ in gathered])
    merged_keys = np.concatenate([k for _, k in gathered])
    order = np.argsort(merged_keys, kind="stable")[:capacity]
    return merged_rows[order]
