"""Reduce the K = k x extra_center_factor mini-batch centres to k with weighted Lloyd trials."""

from __future__ import annotations

import logging

import numpy as np

from algorithms.kmeans import kernels
from algorithms.kmeans.hyperparameters import KMeansHyperparameters

log = logging.getLogger(__name__)


def reduce_centers(centers: np.ndarray, counts: np.ndarray, hp: KMeansHyperparameters,
                   rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Best of `num_trials` weighted Lloyd runs; centres that saw no data get a tiny weight."""
    weights = np.where(counts > 0, counts, 1e-6 * max(float(counts.max()), 1.0))
    best, best_loss = centers[: hp.k], np.inf
    for trial in range(hp.num_trials):
        if hp.local_lloyd_init_method == "kmeans++":
            start = kernels.kmeans_plus_plus(centers, weights, hp.k, rng)
        else:
            start = kernels.random_init(centers, hp.k, rng)
        result, loss = kernels.weighted_lloyd(centers, weights, start, hp.local_lloyd_max_iter, hp.local_lloyd_tol)
        log.info("local kmeans attempt #%d. Current mean square distance %f", trial, loss)
        if loss < best_loss:
            best, best_loss = result, loss
    log.info("finished shrinking process. Mean Square Distance = %f", best_loss)
    return best, best_loss
