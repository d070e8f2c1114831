"""Parallel parsing of plain (uncompressed) CSV and libsvm files in File mode.

The files are memory-mapped and cut at line boundaries into one range per core; the shared numba kernels
(nogil) parse the ranges in threads. CSV rows land in one preallocated matrix, libsvm ranges are joined
into one CSR matrix. Anything unusual (gzip, a parse error, columns that differ between files) returns
None, and the caller's sequential reader does the work and words the error with exact line numbers.
"""

from __future__ import annotations

import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numba
import numpy as np

from common.data import csv_kernel, libsvm_kernel
from common.data.csv_reader import count_columns

MIN_RANGE_BYTES = 8 << 20
Range = tuple[np.ndarray, int]  # (bytes of whole lines, index of its file)


@numba.njit(cache=True, nogil=True)
def _lines(buf: np.ndarray) -> int:
    """Newlines, plus one for a last line without its newline."""
    count = 0
    for c in buf:
        if c == 10:
            count += 1
    return count + (1 if len(buf) and buf[-1] != 10 else 0)


def _ranges(files: list[Path]) -> tuple[list[Range], list[mmap.mmap]] | None:
    maps, ranges = [], []
    threads = os.cpu_count() or 1
    for number, path in enumerate(files):
        if path.stat().st_size == 0:
            continue
        with open(path, "rb") as handle:
            if handle.read(2) == b"\x1f\x8b":
                return None  # gzip: the streaming reader decompresses
            maps.append(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
        buf = np.frombuffer(maps[-1], np.uint8)
        parts = max(1, min(threads, len(buf) // MIN_RANGE_BYTES))
        start = 0
        for k in range(1, parts + 1):
            end = len(buf) if k == parts else maps[-1].find(b"\n", k * len(buf) // parts) + 1
            if end > start:
                ranges.append((buf[start:end], number))
                start = end
    return ranges, maps


def _close(maps: list[mmap.mmap]) -> None:
    for m in maps:
        try:
            m.close()
        except BufferError:
            pass  # a view is still alive; the mapping goes with it


def _rows_per_file(ranges: list[Range], rows: list[int]) -> list[tuple[int, int]]:
    """(file index, rows) per file, in order."""
    out: dict[int, int] = {}
    for (_, number), count in zip(ranges, rows):
        out[number] = out.get(number, 0) + count
    return list(out.items())


def load_csv(files: list[Path], label_size: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]] | None:
    """(features, labels (n, label_size), rows per file) or None."""
    found = _ranges(files)
    if found is None:
        return None
    ranges, maps = found
    del found
    try:
        widths = {count_columns(bytes(maps[i][:1 << 16])) for i in range(len(maps))}
        if len(widths) != 1 or None in widths or next(iter(widths)) <= label_size:
            return None
        ncols = widths.pop()
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            counts = list(pool.map(lambda r: _lines(r[0]), ranges))
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            out = np.empty((int(offsets[-1]), ncols), np.float32)
            results = list(pool.map(lambda k: csv_kernel.parse(ranges[k][0], ncols, out[offsets[k]:offsets[k + 1]]),
                                    range(len(ranges))))
        if any(status != csv_kernel.OK for status, *_ in results):
            return None
        written = [rows for _, rows, _, _ in results]
        if written != counts:  # blank lines: close the gaps
            out = np.concatenate([out[offsets[k]:offsets[k] + written[k]] for k in range(len(ranges))])
        return out[:, label_size:], out[:, :label_size], _rows_per_file(ranges, written)
    finally:
        ranges.clear()
        _close(maps)


def load_libsvm(files: list[Path]) -> dict[str, Any] | None:
    """{"features": CSR, "labels", "weights", "qid", "rows_per_file"} or None."""
    import scipy.sparse as sp

    found = _ranges(files)
    if found is None:
        return None
    ranges, maps = found
    del found
    try:
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            sizes = list(pool.map(lambda r: libsvm_kernel.capacities(r[0]), ranges))
            starts = np.concatenate([[0], np.cumsum([pairs for _, pairs in sizes])]).astype(np.int64)
            all_indices, all_values = np.empty(starts[-1], np.int32), np.empty(starts[-1], np.float32)
            results = list(pool.map(lambda k: libsvm_kernel.parse(
                ranges[k][0], True, sizes[k], all_indices[starts[k]:starts[k + 1]],
                all_values[starts[k]:starts[k + 1]]), range(len(ranges))))
        per_file = _rows_per_file(ranges, [r[1] for r in results])
    finally:
        ranges.clear()
        _close(maps)
    if not results or any(r[0] != libsvm_kernel.OK for r in results):
        return None
    (_, _, _, _, _, _, indptrs, indices, values, labels, weights, qids) = zip(*results)
    shifts = np.cumsum([0] + [len(v) for v in values[:-1]])
    indptr = np.concatenate([indptrs[0][:1]] + [p[1:] + s for p, s in zip(indptrs, shifts)])
    width = max(r[3] for r in results) + 1
    if all(len(v) == size[1] for v, size in zip(values, sizes)):  # every colon was a pair: no gaps, no copy
        indices, values = all_indices, all_values
    else:  # weights, qid: close the gaps
        indices, values = np.concatenate(indices), np.concatenate(values)
    features = sp.csr_matrix((values, indices, indptr), shape=(len(indptr) - 1, width))
    return {"features": features, "labels": np.concatenate(labels), "rows_per_file": per_file,
            "weights": np.concatenate(weights) if any(r[4] for r in results) else None,
            "qid": np.concatenate(qids) if any(r[5] for r in results) else None}
