"""What `predict` returns and how an image lays it out in a response body.

Columns are named arrays, one entry per request row: 1-D (a value per row) or 2-D (a vector per row).
A `ResponseLayout` is fixed when a model is loaded; the writers (one per Accept type) follow it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class ResponseLayout:
    # JSON: {envelope: [one object per row]}; None: one object of column arrays (JumpStart's tabular layout).
    envelope: str | None = "predictions"
    # Floats for every number with null for non-finite, as AWS's first-party images write (an id is 1.0);
    # "native": integers stay integers and floats stay as they are (XGBoost's selectable output, JumpStart).
    numbers: Literal["floats", "native"] = "floats"
    # CSV cells: "numbers" spreads vectors over columns and leaves non-finite cells empty; "python" writes each
    # value as Python prints it, a vector as "[a, b]" (XGBoost's selectable and batch bodies), quoted or not.
    csv_cells: Literal["numbers", "python", "python_quoted"] = "numbers"
    # The columns CSV writes, in this order (those present); None: all, as `predict` ordered them.
    csv_columns: tuple[str, ...] | None = None
    csv_row_separator: str = "\n"          # ",": the 1.0-1 XGBoost image's one-line CSV
    csv_final_newline: bool = True
    # Batch transform of XGBoost: one Python-printed value per line, whatever the Accept type.
    plain_lines: bool = False


DEFAULT_LAYOUT = ResponseLayout()


def python_values(column: np.ndarray, numbers: str = "floats") -> list:
    """The column's values per row as Python objects: floats (non-finite as None) or native numbers."""
    if numbers == "native":
        return np.asarray(column).tolist()
    if column.dtype.kind != "f":
        column = column.astype(np.float64)
    values = column.tolist()
    if not np.isfinite(column).all():
        values = _nulls(values)
    return values


def _nulls(values: list) -> list:
    return [_nulls(v) if isinstance(v, list) else (v if math.isfinite(v) else None) for v in values]


def records(columns: Columns, numbers: str = "floats") -> list[dict]:
    names = list(columns)
    lists = [python_values(columns[name], numbers) for name in names]
    return [dict(zip(names, row)) for row in zip(*lists)]
