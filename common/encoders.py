"""Response bodies from the named columns an algorithm's `predict` returns.

A column is a 1-D array (one value per row) or a 2-D array (a vector per row).
Numbers are emitted as floats with the shortest round-trip text (`1.0`, `0.27046188712120056`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np

from common import content_types as ct

Columns = dict[str, np.ndarray]


def _python_values(column: np.ndarray) -> list:
    """Floats (or lists of floats) per row; non-finite numbers become null."""
    if column.dtype.kind != "f":
        column = column.astype(np.float64)  # ids and labels are emitted as floats (1.0), as AWS's are
    values = column.tolist()
    if not np.isfinite(column).all():
        values = _nulls(values)
    return values


def _nulls(values: list) -> list:
    return [_nulls(v) if isinstance(v, list) else (v if math.isfinite(v) else None) for v in values]


def _records(columns: Columns) -> list[dict]:
    names = list(columns)
    lists = [_python_values(columns[name]) for name in names]
    return [dict(zip(names, row)) for row in zip(*lists)]


def encode_json(columns: Columns, envelope: str) -> bytes:
    return json.dumps({envelope: _records(columns)}).encode()


def encode_jsonlines(columns: Columns, envelope: str) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in _records(columns)).encode()


def encode_csv(columns: Columns, envelope: str) -> bytes:
    parts = [np.asarray(c, dtype=np.float64).reshape(len(c), -1) for c in columns.values()]
    matrix = np.hstack(parts) if parts else np.empty((0, 0))
    lines = [",".join(map(_csv_number, row)) for row in matrix.tolist()]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _csv_number(value: float) -> str:
    return repr(value) if math.isfinite(value) else ""


def encode_recordio(columns: Columns, envelope: str) -> bytes:
    from common.recordio import encode_label_records

    return encode_label_records(columns)


ENCODERS: dict[str, Callable[[Columns, str], bytes]] = {
    ct.JSON: encode_json,
    ct.JSONLINES: encode_jsonlines,
    ct.CSV: encode_csv,
    ct.RECORDIO: encode_recordio,
}


def encode(columns: Columns, accept: str, envelope: str = "predictions") -> bytes:
    return ENCODERS[accept](columns, envelope)
