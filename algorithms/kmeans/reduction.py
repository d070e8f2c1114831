"""Reduce the K = k x extra_center_factor mini-batch centres to k, then refine them on the sampled rows.

The reduction is weighted Lloyd over the centres, each weighted by the rows it absorbed, from
`num_trials` starts (k-means++ starts are greedy: the best of 2 + ln k draws at each step). Those
centres summarise their rows by their means only, so the trial that fits the centres best is often
not the one that fits the rows best: every trial goes on with Lloyd over a screening share of the
sampled rows, and the best there over all of them.
"""

from __future__ import annotations

import logging

import numpy as np

from algorithms.kmeans.hyperparameters import KMeansHyperparameters
from common.imports import LazyModule

kernels = LazyModule("algorithms.kmeans.kernels")

log = logging.getLogger(__name__)
SCREEN_ROWS = 4096
SCREEN_ROWS_PER_CENTER = 40
MIN_SAMPLE_PER_CENTER = 10  # a sample thinner than this (and not all the rows) is not used


def reduction_trials(centers: np.ndarray, counts: np.ndarray, hp: KMeansHyperparameters,
                     rng: np.random.Generator) -> list[tuple[np.ndarray, float]]:
    """(centres, weighted msd) of each weighted Lloyd trial; centres that saw no data get a tiny weight."""
    weights = np.where(counts > 0, counts, 1e-6 * max(float(counts.max()), 1.0))
    trials = []
    for trial in range(hp.num_trials):
        if hp.local_lloyd_init_method == "kmeans++":
            start = kernels.greedy_kmeans_plus_plus(centers, weights, hp.k, rng, 2 + int(np.log(hp.k)))
        else:
            start = kernels.random_init(centers, hp.k, rng)
        result, loss = kernels.weighted_lloyd(centers, weights, start, hp.local_lloyd_max_iter, hp.local_lloyd_tol)
        log.info("local kmeans attempt #%d. Current mean square distance %f", trial, loss)
        trials.append((result, loss))
    return trials


def reduce_centers(centers: np.ndarray, counts: np.ndarray, hp: KMeansHyperparameters,
                   rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The trial with the lowest weighted msd over the centres, and that msd."""
    best, best_loss = min(reduction_trials(centers, counts, hp, rng), key=lambda trial: trial[1])
    log.info("finished shrinking process. Mean Square Distance = %f", best_loss)
    return best, best_loss


def sample_is_usable(sample: np.ndarray, capacity: int, k: int) -> bool:
    """A sample short of its capacity holds every row; a full one must have enough rows per centre."""
    return len(sample) < capacity or len(sample) >= MIN_SAMPLE_PER_CENTER * k


def final_centers(centers: np.ndarray, counts: np.ndarray, hp: KMeansHyperparameters, rng: np.random.Generator,
                  sample: np.ndarray) -> tuple[np.ndarray, float]:
    """k centres from the mini-batch state, refined on the sampled rows; their msd over the sample."""
    if len(centers) > hp.k:
        starts = [result for result, _ in reduction_trials(centers, counts, hp, rng)]
    else:
        starts = [centers]
    return refine_on_sample(starts, sample, hp)


def refine_on_sample(starts: list[np.ndarray], sample: np.ndarray, hp: KMeansHyperparameters
                     ) -> tuple[np.ndarray, float]:
    """Lloyd over the sample's first rows (a uniform share) from every start; the best goes on over all of it."""
    screen = sample[: max(SCREEN_ROWS, SCREEN_ROWS_PER_CENTER * hp.k)]
    screened = [_lloyd(screen, start, hp) for start in starts]
    winner, msd = min(screened, key=lambda result: result[1])
    if len(screen) < len(sample):
        winner, msd = _lloyd(sample, winner, hp)
    log.info("refined the centres on %d sampled rows (%d starts screened on %d): mean square distance %f",
             len(sample), len(starts), len(screen), msd)
    return winner, msd


def _lloyd(rows: np.ndarray, start: np.ndarray, hp: KMeansHyperparameters) -> tuple[np.ndarray, float]:
    return kernels.weighted_lloyd(rows, np.ones(len(rows)), start, hp.local_lloyd_max_iter, hp.local_lloyd_tol)
