"""CSV training files the way AWS's XGBoost image completes them, but said out loud.

AWS's loader reads a header line and text fields (names, 'male', quoted fields with commas) as missing
values and the job goes on silently. Here the strict numeric reader runs first; only a file it refuses is
read again by Python's csv module (quoting as CSV defines it): a first line that looks like a header is
skipped with a WARNING naming the file and the line, non-numeric fields become NaN (XGBoost's missing
value) with one WARNING per column, and only rows of different widths remain an error.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from typing import BinaryIO

import numpy as np

from common.data.batch import Batch
from common.data.text import shorten
from common.errors import UserError

log = logging.getLogger(__name__)
HEADER_PROBE_ROWS = 10  # the rows after the first line that decide whether a text field names a column


def read(stream: BinaryIO, source: str, label_size: int) -> Batch:
    """Every row of the file as numbers, label columns first; see the module docstring."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
    rows = [(number, row) for number, row in enumerate(csv.reader(text), start=1) if any(f.strip() for f in row)]
    if rows and _looks_like_header(rows[0][1], [row for _, row in rows[1:1 + HEADER_PROBE_ROWS]]):
        number, header = rows.pop(0)
        log.warning("%s: line %d looks like a header ('%s') and is skipped; XGBoost's CSV has no header row.",
                    source, number, shorten(",".join(header)))
    if not rows:
        return Batch(np.empty((0, 0), np.float32), np.empty((0, label_size), np.float32), 1, source, label_size)
    width = len(rows[0][1])
    matrix = np.full((len(rows), width), np.nan, np.float32)
    text_cells: dict[int, list] = {}  # column -> [count, first example]
    for index, (number, row) in enumerate(rows):
        if len(row) != width:
            raise UserError(f"Line {number} of {source} has {len(row)} fields but earlier lines have {width}; "
                            "every row needs the same columns.")
        for column, field in enumerate(row):
            value = _number(field)
            if value is None:
                seen = text_cells.setdefault(column, [0, field])
                seen[0] += 1
            else:
                matrix[index, column] = value
    for column, (count, example) in sorted(text_cells.items()):
        log.warning("%s: column %d has %d non-numeric value%s (e.g. '%s'), read as missing values.",
                    source, column + 1, count, "" if count == 1 else "s", shorten(example))
    if width <= label_size:
        raise UserError(f"{source} has {width} columns, but label_size={label_size} leaves no feature columns.")
    return Batch(np.ascontiguousarray(matrix[:, label_size:]), np.ascontiguousarray(matrix[:, :label_size]),
                 1, source, label_size)


def _number(field: str) -> float | None:
    """The field's value; NaN for an empty field (missing, as in the strict reader); None for text."""
    field = field.strip()
    if not field:
        return math.nan
    try:
        return float(field)
    except ValueError:
        return None


def _looks_like_header(first: list[str], following: list[list[str]]) -> bool:
    """Every field of the first line is text, or one is text where the next rows hold numbers."""
    words = [column for column, field in enumerate(first) if field.strip() and _number(field) is None]
    if not words:
        return False
    if len(words) == sum(1 for field in first if field.strip()):
        return True
    return any(row[column].strip() and _number(row[column]) is not None
               for column in words for row in following if column < len(row))
