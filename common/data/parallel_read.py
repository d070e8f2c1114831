"""Parallel parsing of plain (uncompressed) CSV and libsvm files in File mode.

The files are memory-mapped and cut at line boundaries into one range per core; the shared numba kernels
(nogil) parse the ranges in threads. CSV rows land in one preallocated matrix; libsvm ranges parse straight
into one set of CSR arrays, sized by a counting pass (lines and colons per range), which a kernel then closes
up in place (libsvm_kernel.join): no concatenation, and the pairs move only where weights, qid or comments
left gaps. Anything unusual (gzip, a parse error, columns that differ between files) returns
None, and the caller's sequential reader does the work and words the error with exact line numbers.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from common.data import csv_kernel, libsvm_kernel
from common.data.csv_reader import count_columns
from common.data.jit import numba

MIN_RANGE_BYTES = 8 << 20
Range = tuple[np.ndarray, int]  # (bytes of whole lines, index of its file)


@numba.njit(cache=True, nogil=True)
def _lines(buf: np.ndarray) -> int:
    """Newlines, plus one for a last line without its newline."""
    count, _ = csv_kernel.count_bytes(buf, 10, 10)
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


@contextlib.contextmanager
def _mapped(files: list[Path]) -> Iterator[tuple[list[Range], list[mmap.mmap]] | None]:
    """The files' line ranges and their mappings for a `with` block (None: not plain files), unmapped after."""
    found = _ranges(files)
    if found is None:
        yield None
        return
    ranges, maps = found
    try:
        yield ranges, maps
    finally:
        ranges.clear()  # drop the views into the mappings, so that they can close
        _close(maps)


def _rows_per_file(ranges: list[Range], rows: list[int]) -> list[tuple[int, int]]:
    """(file index, rows) per file, in order."""
    out: dict[int, int] = {}
    for (_, number), count in zip(ranges, rows):
        out[number] = out.get(number, 0) + count
    return list(out.items())


def load_csv(files: list[Path], label_size: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]] | None:
    """(features, labels (n, label_size), rows per file) or None."""
    with _mapped(files) as found:
        if found is None:
            return None
        ranges, maps = found
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


def load_libsvm(files: list[Path]) -> dict[str, Any] | None:
    """{"features": CSR, "labels", "weights", "qid", "rows_per_file"} or None."""
    import scipy.sparse as sp

    with _mapped(files) as found:
        if found is None:
            return None
        ranges, _ = found
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            counted = list(pool.map(lambda r: libsvm_kernel.capacities(r[0]), ranges))
            sizes = np.array(counted, np.int64).reshape(-1, 2)  # (lines, colons) per range
            starts = np.zeros((len(ranges) + 1, 2), np.int64)
            np.cumsum(sizes, axis=0, out=starts[1:])
            arrays = libsvm_kernel.allocate(int(starts[-1, 0]), int(starts[-1, 1]), len(ranges))

            def parse(k: int) -> tuple:  # range k straight into its part of the arrays: no copies after
                (row, pair), (rows, pairs) = starts[k], sizes[k]
                indptr, indices, values, labels, weights, qids = arrays
                parsed = libsvm_kernel.parse(ranges[k][0], True, (rows, pairs), (
                    indptr[row + k:row + k + rows + 1], indices[pair:pair + pairs], values[pair:pair + pairs],
                    labels[row:row + rows], weights[row:row + rows], qids[row:row + rows]))
                return parsed[:6] + (len(parsed[7]),)  # (status, rows, line, max index, weight?, qid?, pairs)

            results = list(pool.map(parse, range(len(ranges))))
        per_file = _rows_per_file(ranges, [r[1] for r in results])
    if not results or any(r[0] != libsvm_kernel.OK for r in results):
        return None
    rows, pairs = libsvm_kernel.join(*arrays, starts[:-1, 0].copy(), starts[:-1, 1].copy(),
                                     np.array([r[1] for r in results], np.int64),
                                     np.array([r[6] for r in results], np.int64))
    if rows < 0:
        raise RuntimeError("libsvm ranges do not fit their arrays")  # unreachable: laid out above
    indptr, indices, values, labels, weights, qids = arrays
    width = max(r[3] for r in results) + 1
    features = sp.csr_matrix((values[:pairs], indices[:pairs], indptr[:rows + 1]), shape=(rows, width))
    return {"features": features, "labels": labels[:rows], "rows_per_file": per_file,
            "weights": weights[:rows] if any(r[4] for r in results) else None,
            "qid": qids[:rows] if any(r[5] for r in results) else None}
