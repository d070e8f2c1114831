"""Uniform reservoir sampling in one streaming pass (docs/images/knn.md, "Training").

Algorithm R, vectorised per batch: the i-th row seen (0-based) replaces slot j ~ U{0..i} when
j < capacity. The random draws do not depend on the reservoir's contents, so applying a whole
batch at once, the later row winning when two rows pick the same slot, gives exactly the
sequential algorithm's result. While the reservoir is not full rows are appended, so with
fewer rows than `capacity` every row is kept, in stream order.
"""

from __future__ import annotations

import numpy as np

from common.data.batch import Batch


def host_share(sample_size: int, rank: int, world_size: int) -> int:
    """This host's part of `sample_size`; the first `sample_size % world_size` hosts take one more."""
    return sample_size // world_size + (1 if rank < sample_size % world_size else 0)


class Reservoir:
    """At most `capacity` rows (features, label, row id) drawn uniformly from everything added."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.seen = 0
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._kept = 0
        self.features: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.row_ids: np.ndarray | None = None

    def add(self, batch: Batch, labels: np.ndarray, row_ids: np.ndarray) -> None:
        """Offer the rows of `batch` (float32 labels and int64 row ids, one per row)."""
        n = len(batch)
        start = 0
        if self._kept < self.capacity:
            start = min(n, self.capacity - self._kept)
            self._parts.append((_dense_rows(batch, 0, start), labels[:start].copy(), row_ids[:start].copy()))
            self._kept += start
            self.seen += start
            if self._kept == self.capacity:
                self._consolidate()
        if start == n:
            return
        positions = self.seen + np.arange(n - start, dtype=np.int64)
        slots = self.rng.integers(0, positions + 1)
        self.seen += n - start
        chosen = np.flatnonzero(slots < self.capacity)
        if chosen.size == 0:
            return
        # The last row picking a slot wins, as in the sequential algorithm.
        _, last = np.unique(slots[chosen][::-1], return_index=True)
        chosen = chosen[chosen.size - 1 - last]
        rows = start + chosen
        self.features[slots[chosen]] = _dense_rows(batch, rows)  # type: ignore[index]
        self.labels[slots[chosen]] = labels[rows]  # type: ignore[index]
        self.row_ids[slots[chosen]] = row_ids[rows]  # type: ignore[index]

    def result(self, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features (m, width) float32, labels (m,) float32, row ids (m,) int64), m <= capacity."""
        if self.features is None:
            self._consolidate(width)
        return self.features, self.labels, self.row_ids  # type: ignore[return-value]

    def arrays(self, width: int) -> dict[str, np.ndarray]:
        """The rows kept so far, for a checkpoint (`counters` holds the rest of the state)."""
        if self.features is not None:
            return {"features": self.features, "labels": self.labels, "row_ids": self.row_ids}  # type: ignore
        parts = self._parts or [(np.empty((0, width), np.float32), np.empty(0, np.float32), np.empty(0, np.int64))]
        return {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(("features", "labels", "row_ids"))}

    def counters(self) -> dict:
        return {"seen": self.seen, "kept": self._kept, "rng": self.rng.bit_generator.state}

    @classmethod
    def restore(cls, capacity: int, arrays: dict[str, np.ndarray], counters: dict) -> Reservoir:
        """The reservoir `arrays` and `counters` were taken from, to continue exactly as it would have."""
        reservoir = cls(capacity, 0)
        reservoir.rng.bit_generator.state = counters["rng"]
        reservoir.seen, reservoir._kept = int(counters["seen"]), int(counters["kept"])
        kept = (arrays["features"].copy(), arrays["labels"].copy(), arrays["row_ids"].copy())
        if reservoir._kept == capacity:
            reservoir.features, reservoir.labels, reservoir.row_ids = kept
        elif reservoir._kept:
            reservoir._parts = [kept]
        return reservoir

    def _consolidate(self, width: int = 0) -> None:
        if self._parts:
            self.features = np.concatenate([p[0] for p in self._parts])
            self.labels = np.concatenate([p[1] for p in self._parts])
            self.row_ids = np.concatenate([p[2] for p in self._parts])
        else:
            self.features = np.empty((0, width), np.float32)
            self.labels = np.empty(0, np.float32)
            self.row_ids = np.empty(0, np.int64)
        self._parts = []


def _dense_rows(batch: Batch, rows: np.ndarray | int, stop: int | None = None) -> np.ndarray:
    """Rows of the batch as a dense float32 array (sparse batches are densified row-wise)."""
    selected = batch.features[rows:stop] if stop is not None else batch.features[rows]
    if batch.is_sparse:
        selected = selected.toarray()
    return np.array(selected, dtype=np.float32, order="C")
