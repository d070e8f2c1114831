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
    label_columns: int = 0  # CSV label columns before the features: column numbers in messages count them

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

    def check_finite(self, missing_ok: bool = False) -> None:
        """The one rule for values (docs/data.md): an infinite value, which includes any number beyond
        float32's range, is an error; NaN (an empty field) is a missing value where the algorithm handles
        them (`missing_ok`) and an error where it does not. Errors name the row and the column."""
        found = first_non_finite(self.features, missing_ok)
        if found is None:
            return
        row, column, value = found
        raise UserError(non_finite_message(f"{self.where(row).capitalize()}, column {column + self.label_columns + 1}",
                                           value))


def first_non_finite(features: Features, missing_ok: bool) -> tuple[int, int, float] | None:
    """(row, 0-based feature column, value) of the first value the rule refuses, or None."""
    if issparse(features):
        data = features.data
        bad = np.isinf(data) if missing_ok else ~np.isfinite(data)
        if not bad.any():
            return None
        at = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(features.indptr, at, side="right") - 1)
        return row, int(features.indices[at]), float(data[at])
    if features.dtype == object:  # text categories (TextCategoryCsvReader checked its numbers itself)
        return None
    bad = np.isinf(features) if missing_ok else ~np.isfinite(features)
    if not bad.any():
        return None
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    column = int(np.flatnonzero(bad[row])[0])
    return row, column, float(features[row, column])


def non_finite_message(where: str, value: float) -> str:
    if np.isnan(value):
        return (f"{where} is empty or NaN, and this algorithm needs a value in every field (only XGBoost, LightGBM "
                "and CatBoost read missing values); fill or drop it.")
    return (f"{where} is {value} (infinite, or beyond float32's range of about ±3.4e38); values must be finite "
            "numbers.")


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
    return Batch(features, labels, batches[0].first_row, batches[0].source, batches[0].label_columns)
