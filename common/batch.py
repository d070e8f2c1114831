"""A block of rows as every reader produces it and every algorithm consumes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

from common.errors import UserError

if TYPE_CHECKING:
    import scipy.sparse as sp

# scipy is imported only when sparse data shows up: it costs 0.3 s of start-up.
Features = Union[np.ndarray, "sp.csr_matrix"]


def issparse(features: object) -> bool:
    return type(features).__module__.startswith("scipy.sparse")


@dataclass
class Batch:
    """`features` is float32, dense (n, d) or CSR (n, d); `labels` is float32 (n, label_size) or None.

    `first_row` is the 1-based number of the first row in its source (file or request),
    so checks can say which row is wrong.
    """

    features: Features
    labels: np.ndarray | None = None
    first_row: int = 1
    source: str = "request"

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def width(self) -> int:
        return int(self.features.shape[1])

    @property
    def is_sparse(self) -> bool:
        return issparse(self.features)

    def dense(self) -> np.ndarray:
        if self.is_sparse:
            return np.asarray(self.features.toarray(), dtype=np.float32)
        return self.features

    def where(self, row_index: int) -> str:
        """Human location of a row of this batch, e.g. `row 12 of train/part-0.csv`."""
        return f"row {self.first_row + row_index} of {self.source}"

    def check_width(self, expected: int, what: str = "feature_dim") -> None:
        if self.width != expected:
            raise UserError(
                f"{self.where(0).capitalize()} has {self.width} features but {what} is {expected}."
            )

    def check_finite(self) -> None:
        values = self.features.data if self.is_sparse else self.features
        if np.isfinite(values).all():
            return
        if self.is_sparse:
            bad_value = np.flatnonzero(~np.isfinite(self.features.data))[0]
            row = int(np.searchsorted(self.features.indptr, bad_value, side="right") - 1)
        else:
            row = int(np.flatnonzero(~np.isfinite(self.features).all(axis=1))[0])
        raise UserError(f"{self.where(row).capitalize()} contains NaN or infinite values.")


def concat(batches: list[Batch]) -> Batch:
    """Rows of several batches as one (same width; sparse if any part is sparse)."""
    if len(batches) == 1:
        return batches[0]
    if any(b.is_sparse for b in batches):
        import scipy.sparse as sp

        features: Features = sp.vstack([sp.csr_matrix(b.features) for b in batches], format="csr")
    else:
        features = np.concatenate([b.features for b in batches])
    labels = None
    if all(b.labels is not None for b in batches):
        labels = np.concatenate([b.labels for b in batches])  # type: ignore[misc]
    return Batch(features, labels, batches[0].first_row, batches[0].source)
