"""One pass over the training rows into a bounded reservoir, merged over hosts into the trees' samples.

Each host keeps a uniform reservoir of num_trees × num_samples_per_tree rows of its shard (Algorithm R,
memory bounded by trees × samples × feature_dim, whatever the data size). With N rows over all hosts,
every tree gets s = min(num_samples_per_tree, N // num_trees) rows (docs/images/rcf.md, "Training").
The forest's M = num_trees × s rows are drawn without replacement over all hosts: the leader draws how
many come from each host from the multivariate hypergeometric law on the hosts' row counts, each host
takes that many rows of its shuffled reservoir, so every training row has the same chance M / N to be
in the forest (a "weighted merge"). The M rows, in rank order and then shuffled
with a seed every host shares, are cut into num_trees samples of s rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from common import stopping
from common.checkpoints import Checkpoints
from common.cluster.collective import Collective
from common.errors import UserError
from common.imports import LazyModule
from common.progress import Progress

kernels = LazyModule("algorithms.rcf.kernels")

log = logging.getLogger(__name__)


class Reservoir:
    """A uniform sample without replacement of at most `capacity` rows of a stream."""

    def __init__(self, capacity: int, feature_dim: int, seed: int) -> None:
        self.rows = np.empty((capacity, feature_dim), np.float32)
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    def add(self, x: np.ndarray) -> None:
        uniforms = self.rng.random(len(x)) if self.seen + len(x) > len(self.rows) else np.empty(0)
        self.seen = kernels.reservoir_update(self.rows, self.seen, np.ascontiguousarray(x, np.float32), uniforms)

    def kept(self) -> np.ndarray:
        return self.rows[:min(self.seen, len(self.rows))]

    def counters(self) -> dict:
        return {"seen": self.seen, "rng": self.rng.bit_generator.state}

    def restore(self, kept: np.ndarray, counters: dict) -> None:
        """Continue from a checkpoint's `kept()` rows and `counters()` exactly as the saved reservoir would."""
        self.rows[:len(kept)] = kept
        self.seen = int(counters["seen"])
        self.rng.bit_generator.state = counters["rng"]

    def sample(self) -> np.ndarray:
        """The kept rows, in random order."""
        kept = self.kept()
        return kept[self.rng.permutation(len(kept))]


@dataclass
class Samples:
    per_tree: list[np.ndarray]   # num_trees arrays of s rows
    rows: int                    # training rows over all hosts
    rows_here: int               # rows this host read


def sample_stream(batches: Iterable[np.ndarray], num_trees: int, samples_per_tree: int, feature_dim: int,
                  collective: Collective, seed: int, checkpoints: Checkpoints | None = None,
                  state: list | None = None) -> Samples:
    reservoir = _filled(batches, Reservoir(num_trees * samples_per_tree, feature_dim, seed + collective.rank),
                        checkpoints, state)
    counts = np.array(collective.allgather(reservoir.seen), np.int64)
    rows = int(counts.sum())
    if rows == 0:
        raise UserError("The train channel holds no data rows.")
    if rows < num_trees:
        raise UserError(f"The train channel holds {rows} rows, fewer than num_trees={num_trees}; "
                        "every tree needs at least one row.")
    per_tree = min(samples_per_tree, rows // num_trees)
    if per_tree < samples_per_tree:
        log.info("%d training rows are fewer than num_trees x num_samples_per_tree = %d: using %d samples per tree.",
                 rows, num_trees * samples_per_tree, per_tree)
    total = num_trees * per_tree
    draws = None
    if collective.is_leader:
        draws = np.random.default_rng(seed).multivariate_hypergeometric(counts, total)
    draws = collective.broadcast(draws, root=0)
    mine = reservoir.sample()[:int(draws[collective.rank])]
    pooled = np.concatenate(collective.allgather(mine)) if collective.world_size > 1 else mine
    pooled = pooled[np.random.default_rng(seed + 1).permutation(len(pooled))]
    log.info("%d samples gathered from %d rows on %d host(s).", len(pooled), rows, collective.world_size)
    return Samples([pooled[t * per_tree:(t + 1) * per_tree] for t in range(num_trees)], rows, reservoir.seen)


def _filled(batches: Iterable[np.ndarray], reservoir: Reservoir, checkpoints: Checkpoints | None,
            state: list | None) -> Reservoir:
    """The reservoir after one pass, checkpointed when `checkpoints.due()` (a minute on, or SIGTERM) and at the
    end; a restarted job skips the batches its checkpoint holds (the same batches: `state` holds mini_batch_size),
    or the pass."""
    resumed = checkpoints.latest(state) if checkpoints is not None else None
    if resumed is not None:
        arrays, meta = resumed
        reservoir.restore(arrays["kept"], meta["reservoir"])
        log.info("Resuming from the checkpoint after %d rows%s.", reservoir.seen,
                 " (the whole pass)" if meta["complete"] else "")
        if meta["complete"]:
            return reservoir

    def save(complete: bool) -> None:
        if checkpoints is not None:
            whole = ", the whole train channel" if complete else ""
            checkpoints.save(reservoir.seen, {"kept": reservoir.kept()},
                             {"complete": complete, "reservoir": reservoir.counters(), "state": state},
                             progress=f"sampling {reservoir.seen} rows{whole}")

    position, progress = 0, Progress("sampling the train channel", start=reservoir.seen)
    with stopping.deferred():  # SIGTERM: checkpoint after the batch, then stop
        for x in batches:
            position += len(x)
            if position <= reservoir.seen:
                continue  # in the checkpoint's reservoir already
            reservoir.add(x)
            progress.advance(len(x))
            if checkpoints is not None and checkpoints.due():
                save(complete=False)
            stopping.check()
    progress.finish()
    save(complete=True)
    return reservoir
