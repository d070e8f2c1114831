"""The final k centres chosen by their fit to a sample of the training rows, best over the epochs.

The first pass keeps a bounded uniform sample of the rows (each host of its shard, merged on the
leader). After every epoch the leader reduces the mini-batch centres to k, refines them with Lloyd
over the sample, and keeps the result if its msd on the sample is the lowest yet, so more epochs
never give a worse model by that measure. With half-life decay the stream is meant to forget old
rows, which a uniform sample would not, so no sample is kept and the reduction alone makes the model.
"""

from __future__ import annotations

import logging

import numpy as np

from algorithms.kmeans.hyperparameters import KMeansHyperparameters
from algorithms.kmeans.reduction import final_centers, sample_is_usable
from algorithms.kmeans.sample import RowSample, merge_hosts, sample_capacity
from common.cluster.collective import Collective

log = logging.getLogger(__name__)


class Refinement:
    def __init__(self, hp: KMeansHyperparameters, collective: Collective, seed: int,
                 saved: dict[str, np.ndarray] | None = None) -> None:
        self.hp = hp
        self.collective = collective
        self.seed = seed
        self.enabled = hp.half_life_time_size == 0
        self.capacity = sample_capacity(hp.feature_dim)
        self.collecting: RowSample | None = None
        saved = saved or {}
        self.sample: np.ndarray | None = saved.get("sample")
        self.best: np.ndarray | None = saved.get("best_centers")
        self.best_msd = float(saved["best_msd"][0]) if "best_msd" in saved else np.inf

    def collect(self) -> None:
        """Sample the rows offered from now until the end of this epoch."""
        if self.enabled:
            rng = np.random.default_rng([self.seed, self.collective.rank])
            self.collecting = RowSample(self.capacity, self.hp.feature_dim, rng)

    def offer(self, x: np.ndarray) -> None:
        if self.collecting is not None:
            self.collecting.offer(x)

    def end_epoch(self, centers: np.ndarray, counts: np.ndarray, epoch: int) -> None:
        """Every host calls this after the hosts' centres are combined; only the leader refines."""
        if self.collecting is not None:
            rows, keys = self.collecting.finish()
            self.collecting = None
            self.sample = merge_hosts(self.collective, rows, keys, self.capacity)
        if self.sample is None or not sample_is_usable(self.sample, self.capacity, self.hp.k):
            return
        rng = np.random.default_rng([self.seed, epoch])
        candidate, msd = final_centers(centers, counts, self.hp, rng, self.sample)
        log.info("epoch %d: the final centres' mean square distance on %d sampled rows is %f (best before: %f)",
                 epoch, len(self.sample), msd, self.best_msd)
        if msd < self.best_msd:
            self.best, self.best_msd = candidate, msd

    def arrays(self) -> dict[str, np.ndarray]:
        """What a checkpoint must hold to resume this state (nothing on hosts other than the leader)."""
        saved = {}
        if self.sample is not None:
            saved["sample"] = self.sample
        if self.best is not None:
            saved["best_centers"] = self.best
            saved["best_msd"] = np.array([self.best_msd])
        return saved
