"""application/x-recordio-protobuf: RecordIO frames of `aialgs.data.Record` (docs/data.md, "recordIO-protobuf").

The numba kernels in recordio_kernel.py find whole records, then check each Record and copy
its values into the output (packed float32 values are a plain byte copy). The output is sized
by guessing that every record is dense and as long as the first; when one is not, a count pass
sizes it first and the decode pass reruns.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from common.data.batch import Batch, Features
from common.data.recordio_kernel import (
    _DIMS,
    _INFO,
    _MAX_WIDTH,
    BAD_CFLAG,
    BAD_KEY,
    BAD_MAGIC,
    BYTES_VALUE,
    CUT_HEADER,
    CUT_PARTS,
    CUT_PAYLOAD,
    KEY_COUNT,
    MAGIC,
    MALFORMED,
    MISFIT,
    NO_FEATURES,
    NO_SHAPE,
    NO_TENSOR,
    SHAPE_COUNT,
    SPARSE_LABEL,
    TOO_WIDE,
    _decode,
    _join_parts,
    _scan_frames,
)
from common.errors import UserError

CHUNK_BYTES = 4 << 20
_NO_VALUES, _NO_KEYS = np.empty(0, np.float32), np.empty(0, np.int32)

@dataclass
class _Frames:
    starts: np.ndarray  # offset of each record's first header
    lengths: np.ndarray  # payload length, multi-part records re-joined
    consumed: int
    multipart: bool


@dataclass
class _Widths:
    """Feature and label widths fixed by the first rows of a source."""

    features: int | None = None
    labels: int | None = None


class RecordIOReader:
    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.chunk_bytes = chunk_bytes

    def parse(self, body: bytes, source: str = "request") -> Batch:
        buf = np.frombuffer(body, np.uint8)
        frames = _frames(buf, True, buf.size // 8 + 1, 0, source)
        return _to_batch(buf, frames, 1, source, _Widths())

    def batches(self, stream: BinaryIO, source: str, batch_rows: int) -> Iterator[Batch]:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, got {batch_rows}.")
        pending = _Pending()
        offset, row, widths, eof = 0, 1, _Widths(), False
        while not eof:
            eof = pending.read_from(stream, self.chunk_bytes) == 0
            while True:
                batch, used = _next_batch(pending.view(), eof, batch_rows, offset, row, source, widths)
                if batch is None:
                    break
                pending.drop(used)
                offset, row = offset + used, row + len(batch)
                yield batch


class _Pending:
    """Stream bytes not yet parsed, in a numpy buffer (a bytearray could not grow while viewed)."""

    def __init__(self) -> None:
        self.data = np.empty(0, np.uint8)
        self.start = self.stop = 0

    def view(self) -> np.ndarray:
        return self.data[self.start : self.stop]

    def drop(self, n_bytes: int) -> None:
        self.start += n_bytes

    def read_from(self, stream: BinaryIO, n_bytes: int) -> int:
        """Append up to n_bytes from the stream (straight into the buffer when it can readinto)."""
        size = self.stop - self.start
        if self.start:
            self.data[:size] = self.data[self.start : self.stop]
            self.start, self.stop = 0, size
        if size + n_bytes > self.data.size:
            grown = np.empty(max(size + n_bytes, 2 * self.data.size), np.uint8)
            grown[:size] = self.data[:size]
            self.data = grown
        room = memoryview(self.data)[size : size + n_bytes]
        if hasattr(stream, "readinto"):
            got = stream.readinto(room) or 0
        else:
            chunk = stream.read(n_bytes)
            got = len(chunk)
            room[:got] = chunk
        self.stop += got
        return got


def _next_batch(
    buf: np.ndarray, eof: bool, batch_rows: int, offset: int, row: int, source: str, widths: _Widths
) -> tuple[Batch | None, int]:
    """The next batch_rows records (fewer at the end of the stream), or None for more data."""
    frames = _frames(buf, eof, batch_rows, offset, source)
    if frames.starts.size == 0 or (frames.starts.size < batch_rows and not eof):
        return None, 0
    return _to_batch(buf, frames, row, source, widths), frames.consumed


def _frames(buf: np.ndarray, at_eof: bool, max_records: int, offset: int, source: str) -> _Frames:
    info = np.zeros(_INFO, np.int64)
    none = np.empty(0, np.int64)
    n, _, _ = _scan_frames(buf, at_eof, max_records, none, none, info)
    if info[0]:
        raise UserError(_frame_message(info, offset, source))
    starts, lengths = np.empty(n, np.int64), np.empty(n, np.int64)
    n, consumed, multipart = _scan_frames(buf, at_eof, n, starts, lengths, info)
    return _Frames(starts, lengths, consumed, multipart)


def _to_batch(buf: np.ndarray, frames: _Frames, first_row: int, source: str, widths: _Widths) -> Batch:
    n = frames.starts.size
    if n == 0:
        return Batch(np.zeros((0, 0), np.float32), None, first_row, source)
    starts = frames.starts + 8
    if frames.multipart:
        joined = np.empty(int(frames.lengths.sum()), np.uint8)
        _join_parts(buf, frames.starts, joined, starts)
        buf = joined
    notes = _Notes(n)
    vals, keys, labs, bad = _fill(buf, starts, frames.lengths, notes)
    checked = n if bad < 0 else bad
    counts = np.diff(notes.lptr)
    widths.features = _agreed(notes.widths, checked, widths.features, first_row, source, "features")
    widths.labels = _agreed(np.where(notes.labelled, counts, -1), checked, widths.labels, first_row, source,
                            "label values")
    if bad >= 0:
        raise UserError(_record_message(notes.info, first_row + bad, source))
    width = int(notes.widths[0])
    if notes.sparse.any():
        import scipy.sparse as sp  # only for sparse data: it costs a tenth of a second to import

        features: Features = sp.csr_matrix((vals, keys, notes.vptr), shape=(n, width))
    else:
        features = vals.reshape(n, width)
    labels = labs.reshape(n, int(counts[0])) if notes.labelled.all() else None
    return Batch(features, labels, first_row, source)


class _Notes:
    """What the _decode kernel notes per record: value/label offsets, width, sparse, labelled."""

    def __init__(self, n: int) -> None:
        self.vptr, self.lptr = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
        self.widths, self.sparse, self.labelled = np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool)
        self.scratch, self.info = np.zeros(8, np.uint8), np.zeros(_INFO, np.int64)

    def decode(self, buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, fill: bool,
               vals: np.ndarray = _NO_VALUES, keys: np.ndarray = _NO_KEYS, labs: np.ndarray = _NO_VALUES) -> int:
        return _decode(buf, starts, lengths, fill, vals, keys, labs, self.vptr, self.lptr, self.widths,
                       self.sparse, self.labelled, self.scratch, self.info)


def _fill(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, notes: _Notes
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Values, keys (sparse batches only), labels, and the first bad record or -1.

    Leaves notes.vptr/lptr as offsets (also up to a bad record).
    """
    n = starts.size
    # Guess that every record is dense and as long as the first: then one pass fills and
    # checks everything. Any record that does not fit falls back to counting first.
    if notes.decode(buf, starts[:1], lengths[:1], False) < 0 and not notes.sparse[0]:
        notes.vptr[:] = np.arange(n + 1) * notes.vptr[1]
        notes.lptr[:] = np.arange(n + 1) * notes.lptr[1]
        vals, labs = np.empty(notes.vptr[-1], np.float32), np.empty(notes.lptr[-1], np.float32)
        bad = notes.decode(buf, starts, lengths, True, vals, _NO_KEYS, labs)
        if (bad < 0 and not notes.sparse.any()) or (bad >= 0 and notes.info[0] != MISFIT):
            return vals, _NO_KEYS, labs, bad
        notes.vptr[:], notes.lptr[:] = 0, 0
    bad = notes.decode(buf, starts, lengths, False)
    np.cumsum(notes.vptr, out=notes.vptr)
    np.cumsum(notes.lptr, out=notes.lptr)
    if bad >= 0:
        return _NO_VALUES, _NO_KEYS, _NO_VALUES, bad
    vals, labs = np.empty(notes.vptr[-1], np.float32), np.empty(notes.lptr[-1], np.float32)
    keys = np.empty(notes.vptr[-1] if notes.sparse.any() else 0, np.int32)
    notes.decode(buf, starts, lengths, True, vals, keys, labs)
    return vals, keys, labs, -1


def _agreed(counts: np.ndarray, checked: int, known: int | None, first_row: int, source: str, what: str) -> int | None:
    """The width all of counts[:checked] share (-1 = absent, ignored); UserError at the first other."""
    present = np.flatnonzero(counts[:checked] >= 0)
    if present.size == 0:
        return known
    expected = int(counts[present[0]]) if known is None else known
    differing = present[counts[present] != expected]
    if differing.size:
        i = int(differing[0])
        raise UserError(f"Row {first_row + i} of {source}: the record has {counts[i]} {what} "
                        f"but earlier rows have {expected}.")
    return expected


def _frame_message(info: np.ndarray, offset: int, source: str) -> str:
    code, position, a, b = (int(x) for x in info[:4])
    text = {
        BAD_MAGIC: f"expected the RecordIO magic 0xCED7230A but found 0x{a:08X}",
        BAD_CFLAG: f"RecordIO cflag {b} does not fit here (expected {'0 or 1' if a else '2 or 3'})",
        CUT_HEADER: f"the data ends inside a RecordIO header ({a} of 8 bytes)",
        CUT_PAYLOAD: f"the record length is {a} bytes but only {b} remain",
        CUT_PARTS: f"the data ends inside the multi-part record starting at byte offset {offset + b}",
    }[code]
    return f"Byte offset {offset + position} of {source}: {text}."


def _record_message(info: np.ndarray, row: int, source: str) -> str:
    code, a, b = (int(x) for x in info[:3])
    n_dims = int(info[_DIMS - 1])
    dims = [str(int(d)) for d in info[_DIMS : _DIMS + min(n_dims, _INFO - _DIMS)]]
    shape = "[" + ", ".join(dims + (["..."] if n_dims > len(dims) else [])) + "]"
    which = 'label["values"]' if a == 1 else 'features["values"]'
    text = {
        MALFORMED: "the record is not a valid protobuf Record",
        NO_FEATURES: 'the record has no features["values"]',
        BYTES_VALUE: f"{which} is a bytes Value, not a float32, float64 or int32 tensor",
        NO_TENSOR: f"{which} holds no tensor",
        NO_SHAPE: "sparse features have keys but no shape",
        TOO_WIDE: f"sparse features have shape {shape}, more than {_MAX_WIDTH} features",
        KEY_COUNT: f"sparse features have {a} keys but {b} values",
        BAD_KEY: f"sparse features have key {a % (1 << 64)} but shape is {shape}",
        SHAPE_COUNT: f"dense features have {a} values but shape is {shape}",
        SPARSE_LABEL: 'label["values"] has keys, but labels must be dense',
    }[code]
    return f"Row {row} of {source}: {text}."


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel variant, so no request pays for it."""
    from common.data.recordio_writer import MAGIC_BYTES, encode_dense, encode_sparse

    dense = encode_dense(np.array([[1.0, 2.0]], np.float32), np.array([1.0], np.float32))
    import scipy.sparse as sp

    body = dense + encode_sparse(sp.csr_matrix(np.array([[0.0, 3.0]], np.float64)))
    # Dense payloads of two values start them at offset 16: 4-aligned, so a magic-valued
    # first value is where dmlc's writer would split the record in two parts.
    payload = encode_dense(np.frombuffer(MAGIC_BYTES + bytes(4), np.float32).reshape(1, 2))[8:]
    parts = [struct.pack("<II", MAGIC, 1 << 29 | 16) + payload[:16],
             struct.pack("<II", MAGIC, 3 << 29 | len(payload) - 20) + payload[20:]]
    reader = RecordIOReader()
    reader.parse(body)
    reader.parse(b"".join(parts))
    list(reader.batches(io.BytesIO(body), "warm-up", 1))
