"""k-means building blocks: assignment, the mini-batch centre update, seeding and weighted Lloyd.

Every numba kernel checks the shapes it indexes with and each label against the number of centres
before using it (numba does not bounds-check), so a bad input raises instead of reading or writing
past an array.
"""

from __future__ import annotations

import numpy as np

from common.data.jit import numba


def assign(x: np.ndarray, centers: np.ndarray, center_norms: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Closest centre (lowest index on ties) and the squared distance to it, per row.

    argmin uses the BLAS expansion |x|^2 - 2 x.c + |c|^2; the returned distance is
    recomputed exactly from the chosen centre so small distances keep their precision.
    """
    if center_norms is None:
        center_norms = np.einsum("ij,ij->i", centers, centers)
    scores = x @ centers.T
    scores *= -2.0
    scores += center_norms
    labels = np.argmin(scores, axis=1)
    return labels, squared_distance_to(x, centers, labels)


@numba.njit(cache=True, nogil=True)
def _squared_distance_to(x, centers, labels, out):
    if centers.shape[1] != x.shape[1] or labels.shape[0] != x.shape[0] or out.shape[0] != x.shape[0]:
        raise ValueError("_squared_distance_to: centers, labels or out do not fit x")
    for i in range(x.shape[0]):
        c = labels[i]
        if c < 0 or c >= centers.shape[0]:
            raise IndexError("_squared_distance_to: a label is not the index of a centre")
        total = 0.0
        for j in range(x.shape[1]):
            diff = np.float64(x[i, j]) - centers[c, j]
            total += diff * diff
        out[i] = total


@numba.njit(cache=True, nogil=True)
def nearest_small(x, centers):
    """Closest centre and Euclidean distance per row by direct loops, float32 out.

    For small requests (rows x centres in the thousands) this one call is several times
    faster than the BLAS route's half-dozen numpy calls; ties go to the lowest index."""
    n, k = x.shape[0], centers.shape[0]
    if centers.shape[1] != x.shape[1]:
        raise ValueError("nearest_small: centers and x differ in width")
    labels = np.empty(n, np.float32)
    distances = np.empty(n, np.float32)
    for i in range(n):
        best, best_c = np.inf, 0
        for c in range(k):
            total = 0.0
            for j in range(x.shape[1]):
                diff = np.float64(x[i, j]) - centers[c, j]
                total += diff * diff
            if total < best:
                best, best_c = total, c
        labels[i] = best_c
        distances[i] = np.sqrt(best)
    return labels, distances


def squared_distance_to(x: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.empty(len(x), dtype=np.float64)
    _squared_distance_to(x, centers, labels, out)
    return out


@numba.njit(cache=True, nogil=True)
def minibatch_update(x, labels, centers, counts, decay):
    """Sculley's update: per centre, p = new / (previous + new), c = (1 - p) c + p mean(new).

    `decay` (<= 1) first scales the accumulated counts (the half-life forgetting).
    centers is float64 (K, d); counts float64 (K,); both updated in place.
    """
    k, d = centers.shape
    if x.shape[1] != d or labels.shape[0] != x.shape[0] or counts.shape[0] != k:
        raise ValueError("minibatch_update: x, labels or counts do not fit centers")
    sums = np.zeros((k, d))
    new = np.zeros(k)
    for i in range(x.shape[0]):
        c = labels[i]
        if c < 0 or c >= k:
            raise IndexError("minibatch_update: a label is not the index of a centre")
        new[c] += 1.0
        for j in range(d):
            sums[c, j] += x[i, j]
    for c in range(k):
        counts[c] *= decay
        if new[c] == 0.0:
            continue
        total = counts[c] + new[c]
        for j in range(d):
            centers[c, j] += (sums[c, j] - new[c] * centers[c, j]) / total
        counts[c] = total


@numba.njit(cache=True, nogil=True)
def cluster_sums(x, labels, weights, k):
    """Per centre 0..k-1: the weighted sum of the rows labelled with it, and their total weight."""
    n, d = x.shape
    if labels.shape[0] != n or weights.shape[0] != n:
        raise ValueError("cluster_sums: labels and weights need one entry per row of x")
    sums = np.zeros((k, d))
    mass = np.zeros(k)
    for i in range(n):
        c = labels[i]
        if c < 0 or c >= k:
            raise IndexError("cluster_sums: a label is not the index of a centre")
        w = weights[i]
        mass[c] += w
        for j in range(d):
            sums[c, j] += w * x[i, j]
    return sums, mass


def kmeans_plus_plus(points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Weighted k-means++ seeding (each next centre with probability ~ weight x D^2 to the nearest)."""
    n = len(points)
    chosen = [int(rng.choice(n, p=weights / weights.sum()))]
    closest = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        mass = weights * closest
        total = mass.sum()
        index = int(rng.choice(n, p=mass / total)) if total > 0 else int(rng.integers(n))
        chosen.append(index)
        np.minimum(closest, ((points - points[index]) ** 2).sum(axis=1), out=closest)
    return points[chosen].copy()


def greedy_kmeans_plus_plus(points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator,
                            local_trials: int) -> np.ndarray:
    """Greedy weighted k-means++: each step draws `local_trials` candidates ~ weight x D^2 and keeps the one
    that lowers the weighted potential (sum of weight x D^2) most."""
    n = len(points)
    norms = np.einsum("ij,ij->i", points, points)
    chosen = [int(rng.choice(n, p=weights / weights.sum()))]
    closest = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        mass = weights * closest
        total = mass.sum()
        if total > 0:
            candidates = rng.choice(n, size=local_trials, p=mass / total)
        else:
            candidates = rng.integers(n, size=local_trials)
        squared = norms[:, None] - 2.0 * (points @ points[candidates].T) + norms[candidates]
        trial = np.minimum(closest[:, None], np.maximum(squared, 0.0))
        best = int(np.argmin(weights @ trial))
        chosen.append(int(candidates[best]))
        closest = trial[:, best]
    return points[chosen].copy()


def random_init(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return points[rng.choice(len(points), size=k, replace=False)].copy()


def weighted_lloyd(points: np.ndarray, weights: np.ndarray, centers: np.ndarray, max_iter: int,
                   tol: float) -> tuple[np.ndarray, float]:
    """Lloyd's algorithm on weighted points; stops when the loss improves by <= tol (relative).

    Returns the centres (float64) and the weighted mean squared distance. Distances are found in
    the points' precision (float32 rows keep their faster BLAS route); sums and centres are float64.
    """
    centers = centers.astype(np.float64, copy=True)
    previous = np.inf
    total_weight = weights.sum()
    for _ in range(max_iter):
        labels, distances = assign(points, centers.astype(points.dtype))
        loss = float(weights @ distances) / total_weight
        sums, mass = cluster_sums(points, labels, weights, len(centers))
        filled = mass > 0
        centers[filled] = sums[filled] / mass[filled, None]
        if loss == 0.0 or (np.isfinite(previous) and previous - loss <= tol * previous):
            break
        previous = loss
    labels, distances = assign(points, centers.astype(points.dtype))
    return centers, float(weights @ distances) / total_weight
