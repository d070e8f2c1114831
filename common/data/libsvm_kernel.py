"""A numba libsvm parser: `<label>[:<weight>] [qid:<q>] <index>:<value> ...` lines to CSR arrays.

Status codes: 0 ok, 1 bad label or weight, 2 a token is not index:value (or an index or qid out of range),
3 a training row has no label, 4 an output array has no room for the next row or pair (nothing was written
past its end; `capacities` sizes them so that this cannot happen).
Bounds: `capacities` counts lines and colons, which bound the rows and index:value pairs a parse can write;
the kernels check every write against the arrays' lengths anyway, and every read of `buf` against its end.
"""

from __future__ import annotations

import numpy as np

from common.data.csv_kernel import (
    _POW10,
    INF_WORD,
    INFINITY_WORD,
    NAN_WORD,
    _parse_plain,
    count_bytes,
    parse_number,
)
from common.data.jit import numba

OK, BAD_LABEL, BAD_TOKEN, NO_LABEL, FULL = 0, 1, 2, 3, 4
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
    """Fill the arrays; returns (status, rows, nnz, line of the problem, max index, saw weight, saw qid).

    Most tokens are `<digits>:<plain decimal>` followed by a space or a newline: a fast path takes those in one
    go (the same values as the general path, which handles everything else and every error)."""
    end = len(buf)
    i, row, nnz, line, max_index = 0, 0, 0, 0, -1
    saw_weight, saw_qid = False, False
    row_capacity = min(len(indptr) - 1, len(labels), len(weights), len(qids))
    pair_capacity = min(len(indices), len(values))
    if row_capacity < 0:
        return FULL, row, nnz, line, max_index, saw_weight, saw_qid
    indptr[0] = 0
    pow10 = _POW10
    while i < end:
        while i < end and _blank(buf[i]):
            i += 1
        if i >= end or buf[i] == _NL:
            i += 1
            line += 1
            continue
        if row >= row_capacity:
            return FULL, row, nnz, line, max_index, saw_weight, saw_qid
        labels[row], weights[row], qids[row] = np.nan, 1.0, 0
        first = not _token_has_colon(buf, i, end)
        if labelled or first:
            if labelled and buf[i] != 45 and buf[i] != 43 and buf[i] != 46 and not (48 <= buf[i] <= 57):
                return NO_LABEL if not first else BAD_LABEL, row, nnz, line, max_index, saw_weight, saw_qid
            value, i, ok = parse_number(buf, i, end, pow10, nan_word, inf_word, infinity_word)
            labels[row] = value
            if ok and i < end and buf[i] == _COLON:
                weight, i, ok = parse_number(buf, i + 1, end, pow10, nan_word, inf_word, infinity_word)
                weights[row] = weight
                saw_weight = True
            if not ok or (i < end and not _blank(buf[i]) and buf[i] != _NL):
                return BAD_LABEL, row, nnz, line, max_index, saw_weight, saw_qid
        while True:
            while i < end and _blank(buf[i]):
                i += 1
            if i >= end or buf[i] == _NL:
                break
            # The fast path: at most 10 index digits (<= MAX_INDEX), ':', a plain decimal, then a space, a
            # newline or the end. Anything else leaves i and nnz as they were for the general path below.
            j, index = i, np.int64(0)
            while j < end and j - i < 10 and 48 <= buf[j] <= 57:
                index = index * 10 + (np.int64(buf[j]) - 48)
                j += 1
            if j > i and j < end and buf[j] == _COLON and index <= MAX_INDEX:
                value, after, ok = _parse_plain(buf, j + 1, end, pow10)
                if ok and (after >= end or buf[after] == _SP or buf[after] == _NL):
                    if nnz >= pair_capacity:
                        return FULL, row, nnz, line, max_index, saw_weight, saw_qid
                    indices[nnz] = index
                    values[nnz] = value
                    nnz += 1
                    if index > max_index:
                        max_index = index
                    i = after
                    continue
            if buf[i] == 35:  # '#': a comment to the end of the line
                while i < end and buf[i] != _NL:
                    i += 1
                break
            is_qid = i + 4 <= end and buf[i] == 113 and buf[i + 1] == 105 and buf[i + 2] == 100 and buf[i + 3] == 58
            if is_qid:
                q, i, ok = parse_number(buf, i + 4, end, pow10, nan_word, inf_word, infinity_word)
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
                    value, i, ok = parse_number(buf, i + 1, end, pow10, nan_word, inf_word, infinity_word)
                    if nnz >= pair_capacity:
                        return FULL, row, nnz, line, max_index, saw_weight, saw_qid
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
    newlines, colons = count_bytes(buf, _NL, _COLON)
    return newlines + 1, colons


@numba.njit(cache=True, nogil=True)
def join(indptr, indices, values, labels, weights, qids, row_starts, pair_starts, rows, pairs):
    """Closes, in place, the gaps between ranges parsed into one set of arrays (`allocate(lines, colons, ranges)`
    with the ranges' capacities summed); returns (rows, pairs) in all, or (-1, -1) when the ranges do not lie
    inside the arrays, disjoint and in order (then nothing moved).

    Range k parsed rows[k] rows into labels, weights and qids from row_starts[k] and its indptr (from 0) from
    row_starts[k] + k, and pairs[k] pairs from pair_starts[k]; row_starts and pair_starts are the running sums
    of the capacities. Every element moves to a lower position or stays, in ascending order, so none is
    overwritten before it is read; indptr becomes global."""
    ranges = len(rows)
    if len(row_starts) < ranges or len(pair_starts) < ranges or len(pairs) < ranges or len(indptr) < 1:
        return -1, -1
    row_room = min(len(labels), len(weights), len(qids))
    pair_room = min(len(indices), len(values))
    row, pair = 0, 0
    for k in range(ranges):  # what the moves below rely on, checked before anything moves
        if rows[k] < 0 or pairs[k] < 0 or row_starts[k] < row or pair_starts[k] < pair:
            return -1, -1
        if row_starts[k] + k + rows[k] >= len(indptr) or row_starts[k] + rows[k] > row_room:
            return -1, -1
        if pair_starts[k] + pairs[k] > pair_room:
            return -1, -1
        row, pair = row_starts[k] + rows[k], pair_starts[k] + pairs[k]
    row, pair = 0, 0
    indptr[0] = 0
    for k in range(ranges):
        source = row_starts[k] + k
        for r in range(1, rows[k] + 1):
            indptr[row + r] = indptr[source + r] + pair
        if row != row_starts[k]:
            for r in range(rows[k]):
                labels[row + r] = labels[row_starts[k] + r]
                weights[row + r] = weights[row_starts[k] + r]
                qids[row + r] = qids[row_starts[k] + r]
        if pair != pair_starts[k]:
            for n in range(pairs[k]):
                indices[pair + n] = indices[pair_starts[k] + n]
                values[pair + n] = values[pair_starts[k] + n]
        row += rows[k]
        pair += pairs[k]
    return row, pair


def allocate(rows: int, pairs: int, ranges: int = 1) -> tuple[np.ndarray, ...]:
    """(indptr, indices, values, labels, weights, qids) with room for `rows` rows and `pairs` pairs; indptr holds
    one more entry per range (each range's starts from 0)."""
    return (np.empty(rows + ranges, np.int64), np.empty(pairs, np.int32), np.empty(pairs, np.float32),
            np.empty(rows, np.float32), np.empty(rows, np.float32), np.empty(rows, np.int64))


def parse(buf: np.ndarray, labelled: bool, sizes: tuple[int, int] | None = None,
          arrays: tuple[np.ndarray, ...] | None = None) -> tuple:
    """(status, rows, line, max_index, saw_weight, saw_qid, indptr, indices, values, labels, weights, qids).

    `sizes` is `capacities(buf)` when the caller has it; `arrays` (as `allocate` makes them, at least that
    large) may be views of the caller's arrays, so that several ranges parse straight into one CSR matrix."""
    rows_room, pairs_room = capacities(buf) if sizes is None else sizes
    indptr, indices, values, labels, weights, qids = allocate(rows_room, pairs_room) if arrays is None else arrays
    status, rows, nnz, line, max_index, saw_weight, saw_qid = parse_lines(
        buf, labelled, indptr, indices, values, labels, weights, qids, NAN_WORD, INF_WORD, INFINITY_WORD)
    if status == FULL:  # unreachable: capacities bounds the rows and pairs
        raise RuntimeError("libsvm rows or pairs exceeded their proven bound")
    return (status, rows, line, max_index, saw_weight, saw_qid, indptr[:rows + 1], indices[:nnz], values[:nnz],
            labels[:rows], weights[:rows], qids[:rows])
