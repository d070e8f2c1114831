"""From the k neighbours' labels to a prediction (docs/images/knn.md, "Prediction").

Classifier: the label occurring most often; among tied labels the one that occurs first in the
nearest-first list (i.e. the nearest of the tied labels). Regressor: the mean of the k labels.
"""

from __future__ import annotations

import numpy as np

from common.data.jit import numba


@numba.njit(cache=True, nogil=True)
def _majority(labels, out):  # pragma: no cover - compiled
    n, k = labels.shape
    for i in range(n):
        row = labels[i]
        order = np.argsort(row, kind="mergesort")
        best_count, best_first, best_value = 0, k, row[0]
        start = 0
        while start < k:
            value = row[order[start]]
            stop, first = start, k
            while stop < k and row[order[stop]] == value:
                if order[stop] < first:
                    first = order[stop]
                stop += 1
            count = stop - start
            if count > best_count or (count == best_count and first < best_first):
                best_count, best_first, best_value = count, first, value
            start = stop
        out[i] = best_value


def majority_vote(labels: np.ndarray) -> np.ndarray:
    """(n, k) labels, nearest first -> (n,) voted labels (same dtype)."""
    labels = np.ascontiguousarray(labels)
    out = np.empty(labels.shape[0], dtype=labels.dtype)
    if labels.size:
        _majority(labels, out)
    return out


def mean_label(labels: np.ndarray) -> np.ndarray:
    return labels.mean(axis=1, dtype=np.float64)


def as_written(labels: np.ndarray) -> np.ndarray:
    """float32 labels as the float64 numbers their shortest text denotes: 0.1f -> 0.1, not 0.10000000149.

    Labels are stored as float32 (the artifact format); responses then show the label the user wrote.
    """
    values, inverse = np.unique(labels, return_inverse=True)
    decimal = values.astype(str).astype(np.float64)
    return decimal[inverse].reshape(labels.shape)


def warm_up() -> None:
    majority_vote(np.zeros((1, 2), np.float64))
