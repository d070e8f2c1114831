"""text/libsvm: `<label>[:<weight>] <index>:<value> ...`, indices used verbatim (spec contract §7.4)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import scipy.sparse as sp

from common.batch import Batch
from common.errors import UserError


class LibsvmReader:
    """Rows become CSR; width = largest index + 1 unless `width` is given.

    `labelled=False` (requests) skips a leading token without ':' if present.
    """

    def __init__(self, labelled: bool = True, width: int | None = None) -> None:
        self.labelled = labelled
        self.width = width

    def parse(self, body: bytes, source: str = "request") -> Batch:
        return self._rows(body.splitlines(), 1, source)

    def batches(self, stream: BinaryIO, source: str, batch_rows: int) -> Iterator[Batch]:
        lines: list[bytes] = []
        first = 1
        for number, line in enumerate(stream, start=1):
            lines.append(line)
            if len(lines) == batch_rows:
                yield self._rows(lines, first, source)
                lines, first = [], number + 1
        if lines:
            yield self._rows(lines, first, source)

    def _rows(self, lines: list[bytes], first_line: int, source: str) -> Batch:
        labels: list[float] = []
        indptr = [0]
        indices: list[int] = []
        values: list[float] = []
        for offset, raw in enumerate(lines):
            tokens = raw.split()
            if not tokens:
                continue
            where = f"Line {first_line + offset} of {source}"
            if b":" not in tokens[0]:
                if self.labelled:
                    labels.append(_number(tokens[0], where, "label"))
                tokens = tokens[1:]
            elif self.labelled:
                raise UserError(f"{where} has no label; libsvm training rows start with the label.")
            for token in tokens:
                key, sep, value = token.partition(b":")
                if not sep or not key.isdigit():
                    raise UserError(f"{where}: '{token.decode(errors='replace')}' is not index:value.")
                indices.append(int(key))
                values.append(_number(value, where, "value"))
            indptr.append(len(indices))
        width = self.width if self.width is not None else (max(indices) + 1 if indices else 0)
        if indices and max(indices) >= width:
            raise UserError(f"{source} has feature index {max(indices)} but the model has {width} features.")
        matrix = sp.csr_matrix(
            (np.asarray(values, np.float32), np.asarray(indices, np.int64), np.asarray(indptr)),
            shape=(len(indptr) - 1, width),
        )
        label_array = np.asarray(labels, np.float32).reshape(-1, 1) if self.labelled else None
        return Batch(matrix, label_array, first_line, source)


def _number(token: bytes, where: str, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise UserError(f"{where}: {what} '{token.decode(errors='replace')}' is not a number.") from None
