"""text/csv response bodies: one line per row (or one line for all, as `layout.csv_row_separator` says)."""

from __future__ import annotations

import math

import numpy as np

from common.data.columns import Columns, ResponseLayout


def encode_csv(columns: Columns, layout: ResponseLayout) -> bytes:
    if layout.csv_columns is not None:
        columns = {name: columns[name] for name in layout.csv_columns if name in columns}
    lines = _number_lines(columns) if layout.csv_cells == "numbers" else _python_lines(columns, layout.csv_cells)
    if not lines:
        return b""
    return (layout.csv_row_separator.join(lines) + ("\n" if layout.csv_final_newline else "")).encode()


def _number_lines(columns: Columns) -> list[str]:
    parts = [np.asarray(c, dtype=np.float64).reshape(len(c), -1) for c in columns.values()]
    if not parts:
        return []
    return [",".join(map(_number, row)) for row in np.hstack(parts).tolist()]


def _number(value: float) -> str:
    return repr(value) if math.isfinite(value) else ""


def _python_lines(columns: Columns, cells: str) -> list[str]:
    quoted = cells == "python_quoted"
    rows = zip(*(np.asarray(c).tolist() for c in columns.values()))
    return [",".join(_python_cell(value, quoted) for value in row) for row in rows]


def _python_cell(value: object, quoted: bool) -> str:
    return f'"{value}"' if quoted and isinstance(value, list) else str(value)
