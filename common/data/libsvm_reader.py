"""text/libsvm: `<label>[:<weight>] [qid:<q>] <index>:<value> ...`, indices used verbatim (docs/data.md, "libsvm").

Parsed by a numba kernel (libsvm_kernel.py) in blocks of whole lines. Batches are `LibsvmBatch`es:
a `Batch` plus the instance weights and query ids when the data has them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import scipy.sparse as sp

from common.data import libsvm_kernel as kernel
from common.data.batch import Batch
from common.data.text import is_number, shorten
from common.errors import UserError

CHUNK_BYTES = 4 << 20


@dataclass
class LibsvmBatch(Batch):
    weights: np.ndarray | None = None  # float32 (n,), present when some line has `label:weight`
    qid: np.ndarray | None = None      # int64 (n,), present when some line has `qid:<q>`


class LibsvmReader:
    """Rows become CSR; width = largest index + 1 unless `width` is given.

    `labelled=False` (requests) skips a leading token without ':' if present.
    """

    def __init__(self, labelled: bool = True, width: int | None = None, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.labelled, self.width, self.chunk_bytes = labelled, width, chunk_bytes

    def parse(self, body: bytes, source: str = "request") -> LibsvmBatch:
        return self._block(body, 0, 1, source)

    def batches(self, stream: BinaryIO, source: str, batch_rows: int) -> Iterator[LibsvmBatch]:
        carry, lines_before, rows_before = b"", 0, 0
        while True:
            chunk = stream.read(self.chunk_bytes)
            block = carry + chunk if carry else chunk
            cut = len(block) if not chunk else block.rfind(b"\n") + 1
            whole, carry = block[:cut], block[cut:]
            if whole:
                batch = self._block(whole, lines_before, rows_before + 1, source)
                lines_before += whole.count(b"\n")
                for start in range(0, len(batch), batch_rows):
                    yield _rows(batch, start, start + batch_rows)
                rows_before += len(batch)
            if not chunk:
                return

    def _block(self, block: bytes, lines_before: int, first_row: int, source: str) -> LibsvmBatch:
        buf = np.frombuffer(block, np.uint8)
        (status, rows, line, max_index, saw_weight, saw_qid,
         indptr, indices, values, labels, weights, qids) = kernel.parse(buf, self.labelled)
        if status != kernel.OK:
            raise UserError(_describe(block, status, line, lines_before, source))
        width = self.width if self.width is not None else max_index + 1
        if max_index >= width:
            raise UserError(f"{source} has feature index {max_index} but the model has {width} features.")
        matrix = sp.csr_matrix((values, indices, indptr), shape=(rows, width))
        return LibsvmBatch(matrix, labels.reshape(-1, 1) if self.labelled else None, first_row, source,
                           weights=weights if saw_weight else None, qid=qids if saw_qid else None)


def _rows(batch: LibsvmBatch, start: int, stop: int) -> LibsvmBatch:
    if start == 0 and stop >= len(batch):
        return batch

    def cut(array: np.ndarray | None) -> np.ndarray | None:
        return None if array is None else array[start:stop]

    return LibsvmBatch(batch.features[start:stop], cut(batch.labels), batch.first_row + start, batch.source,
                       weights=cut(batch.weights), qid=cut(batch.qid))


def _describe(block: bytes, status: int, line: int, lines_before: int, source: str) -> str:
    text = block.split(b"\n")[line].decode("utf-8", "replace")
    where = f"Line {lines_before + line + 1} of {source}"
    tokens = [t for t in re.split(r"[ \t\r]+", text) if t]  # the kernel's blanks: space, tab, CR only
    if not tokens:
        return f"{where} holds no tokens, only {shorten(repr(text))}; separate tokens with spaces or tabs."
    if status == kernel.NO_LABEL:
        return f"{where} has no label; libsvm training rows start with the label."
    if status == kernel.BAD_LABEL:
        return f"{where}: label '{_shown(tokens[0])}' is not a number (or number:weight)."
    for token in tokens[1:] if ":" not in tokens[0] or status != kernel.BAD_TOKEN else tokens:
        key, sep, value = token.partition(":")
        if not (sep and (key.isdigit() or key == "qid") and is_number(value)):
            return f"{where}: '{_shown(token)}' is not index:value."
        if key.isdigit() and int(key) > kernel.MAX_INDEX:
            return f"{where}: feature index {shorten(key)} is larger than the largest allowed, {kernel.MAX_INDEX}."
        if key == "qid" and not _is_integer(value):
            return f"{where}: qid '{shorten(value)}' is not an integer of at most 2^53."
    return f"{where} is not libsvm: '{shorten(text.strip())}'."


def _is_integer(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return abs(value) <= kernel.MAX_QID and value.is_integer()


def _shown(token: str) -> str:
    """The token as the message shows it: control characters escaped (a vertical tab is no blank here)."""
    return shorten(token if token.isprintable() else repr(token)[1:-1])
