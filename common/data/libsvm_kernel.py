"""A numba libsvm parser: `<label>[:<weight>] [qid:<q>] <index>:<value> ...` lines to CSR arrays.

Status codes: 0 ok, 1 bad label or weight, 2 a token is not index:value (or an index or qid out of range),
3 a training row has no label.
Bounds: `capacities` counts lines and colons, which bound the rows and index:value pairs a parse can write.
"""

from __future__ import annotations

import numba
import numpy as np

from common.data.csv_kernel import _POW10, INF_WORD, INFINITY_WORD, NAN_WORD, parse_number

OK, BAD_LABEL, BAD_TOKEN, NO_LABEL = 0, 1, 2, 3
_NL, _SP, _TAB, _CR, _COLON = 10, 32, 9, 13, 58
MAX_INDEX = (1 << 31) - 2  # indices are int32 and the width (largest index + 1) must be one too
MAX_QID = 1 << 53  # qids arrive as floats: beyond this they are no longer exact integers


@numba.njit(cache=True, nogil=True)
def _blank(c: int) -> bool:
    return c == _SP or c == _TAB or c == _CR


@numba.njit(cache=True, nogil=True)
def _token_has_colon(buf, i, end):
    while i < end and not _blank(buf[i]) and buf[i] != _NL:
        if buf[i] == _COLON:
            return True
        i += 1
    return False


@numba.njit(cache=True, nogil=True)
def parse_lines(buf, labelled, indptr, indices, values, labels, weights, qids, nan_word, inf_word, infinity_word):
    """Fill the arrays; returns (status, rows, nnz, line of the problem, max index, saw weight, saw qid)."""
    end = len(buf)
    i, row, nnz, line, max_index = 0, 0, 0, 0, -1
    saw_weight, saw_qid = False, False
    indptr[0] = 0
    while i < end:
        while i < end and _blank(buf[i]):
            i += 1
        if i >= end or buf[i] == _NL:
            i += 1
            line += 1
            continue
        labels[row], weights[row], qids[row] = np.nan, 1.0, 0
        first = not _token_has_colon(buf, i, end)
        if labelled or first:
            if labelled and buf[i] != 45 and buf[i] != 43 and buf[i] != 46 and not (48 <= buf[i] <= 57):
                return NO_LABEL if not first else BAD_LABEL, row, nnz, line, max_index, saw_weight, saw_qid
            value, i, ok = parse_number(buf, i, end, _POW10, nan_word, inf_word, infinity_word)
            labels[row] = value
            if ok and i < end and buf[i] == _COLON:
                weight, i, ok = parse_number(buf, i + 1, end, _POW10, nan_word, inf_word, infinity_word)
                weights[row] = weight
                saw_weight = True
            if not ok or (i < end and not _blank(buf[i]) and buf[i] != _NL):
                return BAD_LABEL, row, nnz, line, max_index, saw_weight, saw_qid
        while True:
            while i < end and _blank(buf[i]):
                i += 1
            if i >= end or buf[i] == _NL:
                break
            if buf[i] == 35:  # '#': a comment to the end of the line
                while i < end and buf[i] != _NL:
                    i += 1
                break
            is_qid = i + 4 <= end and buf[i] == 113 and buf[i + 1] == 105 and buf[i + 2] == 100 and buf[i + 3] == 58
            if is_qid:
                q, i, ok = parse_number(buf, i + 4, end, _POW10, nan_word, inf_word, infinity_word)
                ok = ok and abs(q) <= MAX_QID and q == np.floor(q)  # NaN fails both
                qids[row] = np.int64(q) if ok else 0
                saw_qid = True
            else:
                index = np.int64(0)
                digits = 0
                while i < end and 48 <= buf[i] <= 57:
                    if index <= MAX_INDEX:  # stops growing past the limit: no int64 overflow
                        index = index * 10 + (buf[i] - 48)
                    digits += 1
                    i += 1
                ok = digits > 0 and index <= MAX_INDEX and i < end and buf[i] == _COLON
                if ok:
                    value, i, ok = parse_number(buf, i + 1, end, _POW10, nan_word, inf_word, infinity_word)
                    indices[nnz] = index
                    values[nnz] = value
                    nnz += 1
                    if index > max_index:
                        max_index = index
            if not ok or (i < end and not _blank(buf[i]) and buf[i] != _NL):
                return BAD_TOKEN, row, nnz, line, max_index, saw_weight, saw_qid
        row += 1
        indptr[row] = nnz
        line += 1
        i += 1
    return OK, row, nnz, line, max_index, saw_weight, saw_qid


@numba.njit(cache=True, nogil=True)
def capacities(buf):
    """(rows, index:value pairs) that a parse of `buf` can produce at most: lines and colons, in one pass."""
    lines, colons = 1, 0
    for c in buf:
        if c == _NL:
            lines += 1
        elif c == _COLON:
            colons += 1
    return lines, colons


def parse(buf: np.ndarray, labelled: bool, sizes: tuple[int, int] | None = None,
          indices: np.ndarray | None = None, values: np.ndarray | None = None) -> tuple:
    """(status, rows, line, max_index, saw_weight, saw_qid, indptr, indices, values, labels, weights, qids).

    `sizes` is `capacities(buf)` when the caller has it; `indices` and `values` may be views of the caller's
    arrays (as long as the pairs) so that several ranges parse straight into one CSR matrix."""
    capacity, nnz_capacity = capacities(buf) if sizes is None else sizes
    indptr = np.empty(capacity + 1, np.int64)
    indices = np.empty(nnz_capacity, np.int32) if indices is None else indices
    values = np.empty(nnz_capacity, np.float32) if values is None else values
    labels = np.empty(capacity, np.float32)
    weights = np.empty(capacity, np.float32)
    qids = np.empty(capacity, np.int64)
    status, rows, nnz, line, max_index, saw_weight, saw_qid = parse_lines(
        buf, labelled, indptr, indices, values, labels, weights, qids, NAN_WORD, INF_WORD, INFINITY_WORD)
    return (status, rows, line, max_index, saw_weight, saw_qid, indptr[:rows + 1], indices[:nnz], values[:nnz],
            labels[:rows], weights[:rows], qids[:rows])
