"""RecordIO framing and `aialgs.data.Record` protobuf encoding (docs/data.md, "recordIO-protobuf").

The wire format is written by hand (no `protobuf` dependency). Records whose rows all have
the same byte length (float32/float64 tensors, the response format) are built for all rows
at once as a (rows, bytes) uint8 matrix; the rest (int32 varints, sparse rows) row by row.
"""

from __future__ import annotations

import functools
import struct

import numpy as np
import scipy.sparse as sp

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
MAX_LENGTH = (1 << 29) - 1

_FEATURES, _LABEL = 1, 2  # Record map fields
_TENSOR_FIELD = {"float32": 2, "float64": 3, "int32": 7}  # Value oneof fields
_LITTLE_ENDIAN = {"float32": "<f4", "float64": "<f8"}
_VARINT_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def frame(payload: bytes) -> bytes:
    """One RecordIO record: magic, length word (cflag 0), payload, zero padding to 4 bytes."""
    length = len(payload)
    if length > MAX_LENGTH:
        raise ValueError(f"A RecordIO payload holds at most {MAX_LENGTH} bytes, got {length}.")
    return MAGIC_BYTES + struct.pack("<I", length) + bytes(payload) + b"\0" * (-length % 4)


def encode_dense(features: np.ndarray, labels: np.ndarray | None = None) -> bytes:
    """One Record per row like the SDK's `write_numpy_to_dense_tensor` (tensor type from dtype)."""
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"Features must be a 2-D array, got shape {features.shape}.")
    label_rows = _label_rows(labels, features.shape[0])
    kinds = [_tensor_kind(features.dtype)]
    if label_rows is not None:
        kinds.append(_tensor_kind(label_rows.dtype))
    if "int32" not in kinds:
        parts = _row_parts(_FEATURES, "values", features)
        if label_rows is not None:
            parts += _row_parts(_LABEL, "values", label_rows)
        return _frame_rows(parts, features.shape[0])
    out = []
    for i, row in enumerate(features):
        payload = _entry(_FEATURES, "values", kinds[0], _tensor(kinds[0], row))
        if label_rows is not None:
            payload += _entry(_LABEL, "values", kinds[1], _tensor(kinds[1], label_rows[i]))
        out.append(frame(payload))
    return b"".join(out)


def encode_sparse(matrix: sp.spmatrix | sp.sparray, labels: np.ndarray | None = None) -> bytes:
    """One Record per CSR row like the SDK's `write_spmatrix_to_sparse_tensor`."""
    if not sp.issparse(matrix):
        raise ValueError("encode_sparse needs a scipy.sparse matrix.")
    csr = sp.csr_matrix(matrix)
    n_rows, n_cols = csr.shape
    label_rows = _label_rows(labels, n_rows)
    kind = _tensor_kind(csr.dtype)
    label_kind = _tensor_kind(label_rows.dtype) if label_rows is not None else ""
    shape = np.array([n_cols], dtype=np.uint64)
    out = []
    for i in range(n_rows):
        lo, hi = csr.indptr[i], csr.indptr[i + 1]
        keys = csr.indices[lo:hi].astype(np.uint64)
        payload = _entry(_FEATURES, "values", kind, _tensor(kind, csr.data[lo:hi], keys, shape))
        if label_rows is not None:
            payload += _entry(_LABEL, "values", label_kind, _tensor(label_kind, label_rows[i]))
        out.append(frame(payload))
    return b"".join(out)


def encode_label_records(columns: dict[str, np.ndarray]) -> bytes:
    """The protobuf response: per row, empty `features` and `label[name]` = float32 values.

    A 1-D column gives one value per row, a 2-D (n, m) column m values per row.
    """
    if not columns:
        raise ValueError("encode_label_records needs at least one column.")
    arrays = {name: np.asarray(col, dtype=np.float32) for name, col in columns.items()}
    n_rows = {a.shape[0] for a in arrays.values()}
    if len(n_rows) != 1:
        raise ValueError(f"Response columns have different row counts: {sorted(n_rows)}.")
    parts: list[bytes | np.ndarray] = []
    for name, array in arrays.items():
        if array.ndim not in (1, 2):
            raise ValueError(f"Response column {name!r} must be 1-D or 2-D, got {array.shape}.")
        parts += _row_parts(_LABEL, name, array[:, None] if array.ndim == 1 else array)
    return _frame_rows(parts, n_rows.pop())


def _label_rows(labels: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    """Labels as (n, m): a 1-D vector gives one label value per row."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim not in (1, 2) or labels.shape[0] != n_rows:
        raise ValueError(f"Labels of shape {labels.shape} do not match {n_rows} rows.")
    return labels[:, None] if labels.ndim == 1 else labels


def _tensor_kind(dtype: np.dtype) -> str:
    if dtype == np.float32:
        return "float32"
    if dtype == np.float64:
        return "float64"
    if dtype in (np.int32, np.int64):
        return "int32"
    raise ValueError(f"Unsupported dtype {dtype}: use float32, float64, int32 or int64.")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varints(values: np.ndarray) -> bytes:
    """Base-128 varints of uint64 values (int64 values are taken as two's complement)."""
    u = np.ascontiguousarray(values).astype(np.int64, copy=False).view(np.uint64)
    if u.size == 0:
        return b""
    n_bytes = 1 + (u[:, None] >= (np.uint64(1) << _VARINT_SHIFTS[1:])).sum(axis=1)
    groups = ((u[:, None] >> _VARINT_SHIFTS) & np.uint64(0x7F)).astype(np.uint8)
    position = np.arange(10)
    groups[position < n_bytes[:, None] - 1] |= 0x80
    return groups[position < n_bytes[:, None]].tobytes()


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _packed_values(kind: str, values: np.ndarray) -> bytes:
    if kind in _LITTLE_ENDIAN:
        return np.ascontiguousarray(values, dtype=_LITTLE_ENDIAN[kind]).tobytes()
    ints = np.asarray(values, dtype=np.int64)
    if ints.size and (ints.min() < _INT32_MIN or ints.max() > _INT32_MAX):
        raise ValueError("Integer values do not fit an int32 tensor.")
    return _varints(ints)


def _tensor(
    kind: str,
    values: np.ndarray,
    keys: np.ndarray | None = None,
    shape: np.ndarray | None = None,
) -> bytes:
    """Tensor message body; empty repeated fields are left out, as protobuf does."""
    body = b""
    if len(values):
        body += _field(1, _packed_values(kind, values))
    if keys is not None and len(keys):
        body += _field(2, _varints(keys))
    if shape is not None and len(shape):
        body += _field(3, _varints(shape))
    return body


def _entry(map_field: int, name: str, kind: str, tensor: bytes) -> bytes:
    """One `map<string, Value>` entry: key `name`, value a Value holding `tensor`."""
    value = _field(_TENSOR_FIELD[kind], tensor)
    return _field(map_field, _field(1, name.encode()) + _field(2, value))


def _row_parts(map_field: int, name: str, rows: np.ndarray) -> list[bytes | np.ndarray]:
    """A map entry per row of a float (n, m) array: constant prefix bytes + the row's values."""
    kind = _tensor_kind(rows.dtype)
    if rows.shape[1] == 0:
        return [_entry(map_field, name, kind, b"")]
    values = rows.astype(_LITTLE_ENDIAN[kind], copy=False)
    return [_entry_prefix(map_field, name, kind, values.shape[1] * values.itemsize), values]


@functools.lru_cache(maxsize=256)
def _entry_prefix(map_field: int, name: str, kind: str, n_bytes: int) -> bytes:
    """The bytes of a map entry before its packed values; they only depend on the byte count."""
    return _entry(map_field, name, kind, _field(1, bytes(n_bytes)))[:-n_bytes]


def _frame_rows(parts: list[bytes | np.ndarray], n_rows: int) -> bytes:
    """Frame n equally long payloads, each the concatenation of `parts` (bytes or (n, m) values)."""
    template = bytearray()
    blocks: dict[str, np.ndarray] = {}
    formats, offsets = [], []
    for part in parts:
        if isinstance(part, np.ndarray):
            blocks[f"f{len(blocks)}"] = part
            formats.append((part.dtype, part.shape[1:]))
            offsets.append(8 + len(template))
            part = bytes(part.shape[1] * part.itemsize)
        template += part
    length = len(template)
    if length > MAX_LENGTH:
        raise ValueError(f"A RecordIO payload holds at most {MAX_LENGTH} bytes, got {length}.")
    # One template row holds every constant byte; the values are then written over it
    # through a structured view whose fields sit at their (unaligned) byte offsets.
    template = MAGIC_BYTES + struct.pack("<I", length) + template + bytes(-length % 4)
    out = np.empty((n_rows, len(template)), dtype=np.uint8)
    out[:] = np.frombuffer(template, np.uint8)
    layout = np.dtype({"names": list(blocks), "formats": formats, "offsets": offsets, "itemsize": len(template)})
    records = out.view(layout).reshape(n_rows)
    for field, block in blocks.items():
        records[field] = block
    return out.tobytes()
