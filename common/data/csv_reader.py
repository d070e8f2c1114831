"""text/csv: no header, numbers only, the first `label_size` columns are labels."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

import numpy as np

from common.data import csv_numpy
from common.data.batch import Batch
from common.data.text import shorten
from common.errors import UserError
from common.imports import LazyModule

csv_kernel = LazyModule("common.data.csv_kernel")  # numba: a small job's CSV may never need it (csv_numpy.py)

CHUNK_BYTES = 4 << 20
PARALLEL_BYTES = 1 << 20  # blocks at least this big are parsed on several threads
BLANKS = b" \t\r"  # what the kernel skips around fields; every other byte is part of one


class CsvReader:
    def __init__(self, label_size: int = 0, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.label_size = label_size
        self.chunk_bytes = chunk_bytes

    def parse(self, body: bytes, source: str = "request") -> Batch:
        ncols = count_columns(body)
        if ncols is None:
            return self._split(np.empty((0, self.label_size), np.float32), 1, source)
        matrix, _ = self._parse_block(body, ncols, 0, source)
        return self._split(matrix, 1, source)

    def batches(self, stream: BinaryIO, source: str, batch_rows: int) -> Iterator[Batch]:
        ncols: int | None = None
        carry = b""
        lines_before = 0
        rows_before = 0
        while True:
            chunk = stream.read(self.chunk_bytes)
            block = carry + chunk if carry else chunk
            cut = len(block) if not chunk else block.rfind(b"\n") + 1
            whole, carry = memoryview(block)[:cut], block[cut:]
            if ncols is None and cut:
                ncols = count_columns(bytes(whole[:1 << 16])) or count_columns(bytes(whole))
            if cut and ncols is None:
                lines_before += bytes(whole).count(b"\n")
            elif cut:
                matrix, lines = self._parse_block(whole, ncols, lines_before, source)
                lines_before += lines
                for start in range(0, len(matrix), batch_rows):
                    part = matrix[start:start + batch_rows]
                    yield self._split(part, rows_before + 1, source)
                    rows_before += len(part)
            if not chunk:
                return

    def _parse_block(self, block: bytes | memoryview, ncols: int, lines_before: int,
                     source: str) -> tuple[np.ndarray, int]:
        """Whole lines to a matrix; big blocks are cut at line ends and parsed on several threads
        (the kernel releases the GIL), each piece's line numbers continuing the previous ones'. A small job's
        blocks go to numpy's reader first (csv_numpy.py)."""
        if csv_numpy.takes(len(block)):
            parsed = csv_numpy.parse(block, ncols)
            if parsed is not None:
                return parsed
        buf = np.frombuffer(block, dtype=np.uint8)
        pieces = _cut_at_line_ends(buf, _threads()) if len(buf) >= PARALLEL_BYTES else [buf]
        if len(pieces) == 1:
            results = [_parse_piece(buf, ncols)]
        else:
            results = list(_pool().map(lambda piece: _parse_piece(piece, ncols), pieces))
        lines = 0
        for piece, (status, _matrix, line, col) in zip(pieces, results):
            if status != csv_kernel.OK:
                raise UserError(_describe_error(piece.tobytes(), status, line, col, ncols, lines_before + lines,
                                                source))
            lines += line
        matrix = results[0][1] if len(results) == 1 else np.concatenate([r[1] for r in results])
        return matrix, lines

    def _split(self, matrix: np.ndarray, first_row: int, source: str) -> Batch:
        if self.label_size == 0:
            return Batch(matrix, None, first_row, source)
        if matrix.shape[1] <= self.label_size and len(matrix):
            raise UserError(
                f"Row {first_row} of {source} has {matrix.shape[1]} columns, but label_size={self.label_size} "
                "leaves no feature columns."
            )
        labels = np.ascontiguousarray(matrix[:, : self.label_size])
        return Batch(np.ascontiguousarray(matrix[:, self.label_size:]), labels, first_row, source,
                     label_columns=self.label_size)


def _parse_piece(buf: np.ndarray, ncols: int) -> tuple[int, np.ndarray, int, int]:
    """Sized for numbers ("0," per field); a piece of mostly empty fields ("," per field) is parsed
    again into the bound no piece can exceed: every row but the last ends in a newline and holds
    ncols - 1 commas, so rows <= len // ncols + 1."""
    out = np.empty((len(buf) // (2 * ncols) + 1, ncols), dtype=np.float32)
    status, rows, line, col = csv_kernel.parse(buf, ncols, out)
    if status == csv_kernel.FULL:
        out = np.empty((len(buf) // ncols + 1, ncols), dtype=np.float32)
        status, rows, line, col = csv_kernel.parse(buf, ncols, out)
    if status == csv_kernel.FULL:
        raise RuntimeError("CSV rows exceeded their proven bound")  # unreachable: see above
    return status, out[:rows], line, col


def _cut_at_line_ends(buf: np.ndarray, parts: int) -> list[np.ndarray]:
    """About equal pieces of `buf`, each ending at a newline (the last at the end of buf)."""
    cuts = [0]
    for k in range(1, parts):
        start = max(cuts[-1], k * len(buf) // parts)
        newline = np.flatnonzero(buf[start:start + (1 << 16)] == 10)
        if len(newline):
            cuts.append(start + int(newline[0]) + 1)
    cuts.append(len(buf))
    return [buf[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


def _threads() -> int:
    """Compute threads for this process: the server sets OMP_NUM_THREADS per worker."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    return int(configured) if configured.isdigit() and int(configured) > 0 else (os.cpu_count() or 1)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="csv")


def count_columns(block: bytes) -> int | None:
    """Fields in the first non-blank line; None when there is none."""
    start = 0
    while start < len(block):
        end = block.find(b"\n", start)
        end = len(block) if end < 0 else end
        if block[start:end].strip(BLANKS):  # blank as the kernel sees it: a form feed is a field
            return block.count(b",", start, end) + 1
        start = end + 1
    return None


def _describe_error(block: bytes, status: int, line: int, col: int, ncols: int,
                    lines_before: int, source: str) -> str:
    text = block.split(b"\n")[line].rstrip(b"\r").decode("utf-8", "replace")
    number = lines_before + line + 1
    where = f"Line {number} of {source}"
    if status == csv_kernel.BAD_WIDTH:
        return f"{where} has {col} fields but earlier lines have {ncols}; every row needs the same columns."
    cell = text.split(",")[col].strip(" \t") if col < len(text.split(",")) else ""
    cell = cell if cell.isprintable() else repr(cell)[1:-1]  # a control character shows, escaped
    if number == 1 and any(c.isalpha() for c in text) and not _looks_numeric(text):
        return (f"{where} looks like a header ('{shorten(text)}'); CSV data must have no header row, "
                "label first.")
    return f"{where}, column {col + 1}: '{shorten(cell)}' is not a number."


def _looks_numeric(text: str) -> bool:
    try:
        [float(cell) for cell in text.split(",") if cell.strip()]
    except ValueError:
        return False
    return True
