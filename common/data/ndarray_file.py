"""Read and write Apache MXNet NDArray files (`mx.nd.save` / `mx.nd.load`) without MXNet.

Layout, little-endian, as mxnet 1.9.1 writes it (src/ndarray/ndarray.cc, include/mxnet/tuple.h):

    file  = uint64 0x112, uint64 0, uint64 count, array * count,
            uint64 name_count (0 or count), (uint64 length, UTF-8 bytes) * name_count
    array = uint32 0xF993FAC9, int32 storage type (0 = dense), int32 ndim, int64 dims[ndim],
            int32 dev_type (1 = cpu), int32 dev_id, int32 dtype flag, data in C order

Reading also accepts what older or other MXNet modes wrote: V1 (magic 0xF993FAC8, no storage
type), V3 (0xF993FACA, saved in NumPy-shape mode, where ndim 0 is a scalar) and the legacy
encoding (no magic: the first uint32 is ndim and the dims are uint32).
"""

from __future__ import annotations

import math
import os
import struct
from typing import BinaryIO

import numpy as np

from common.errors import UserError

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
DENSE = 0
CPU = 1
# Legacy files start with ndim instead of a magic; anything above numpy 1.x's 32-dim cap is
# taken as a bad magic rather than a shape.
MAX_LEGACY_NDIM = 32

# mshadow type flags (mshadow/base.h), as `str` of little-endian numpy dtypes.
DTYPES: dict[int, str] = {
    0: "<f4",  # float32
    1: "<f8",  # float64
    2: "<f2",  # float16
    3: "|u1",  # uint8
    4: "<i4",  # int32
    5: "|i1",  # int8
    6: "<i8",  # int64
    7: "|b1",  # bool
}
FLAGS: dict[str, int] = {dtype: flag for flag, dtype in DTYPES.items()}
SPARSE_STORAGE = {1: "row_sparse", 2: "csr"}

Arrays = list[np.ndarray] | dict[str, np.ndarray]


def dump_ndarrays(arrays: Arrays) -> bytes:
    """The bytes `mx.nd.save` writes for this list or dict of arrays."""
    names = list(arrays) if isinstance(arrays, dict) else []
    values = list(arrays.values()) if isinstance(arrays, dict) else list(arrays)
    parts = [struct.pack("<QQQ", LIST_MAGIC, 0, len(values))]
    parts += [_dump_array(np.asarray(value)) for value in values]
    parts.append(struct.pack("<Q", len(names)))
    for name in names:
        encoded = name.encode("utf-8")
        parts += [struct.pack("<Q", len(encoded)), encoded]
    return b"".join(parts)


def save_ndarrays(path_or_file: str | os.PathLike[str] | BinaryIO, arrays: Arrays) -> None:
    """Write `arrays` as `mx.nd.save(path, arrays)` would."""
    data = dump_ndarrays(arrays)
    if hasattr(path_or_file, "write"):
        path_or_file.write(data)
    else:
        with open(path_or_file, "wb") as f:
            f.write(data)


def _dump_array(array: np.ndarray) -> bytes:
    dtype = array.dtype.newbyteorder("<")
    if dtype.str not in FLAGS:
        raise ValueError(f"An MXNet NDArray file cannot hold dtype {array.dtype}.")
    if array.ndim == 0:
        # MXNet 1.9.1 writes such an array but cannot load the file back.
        raise ValueError("An MXNet NDArray file cannot hold a 0-dim array; reshape it to (1,).")
    header = struct.pack(f"<Iii{array.ndim}q", V2_MAGIC, DENSE, array.ndim, *array.shape)
    context_and_dtype = struct.pack("<iii", CPU, 0, FLAGS[dtype.str])
    return header + context_and_dtype + np.ascontiguousarray(array, dtype=dtype).tobytes()


def load_ndarrays(
    path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview, name: str | None = None
) -> Arrays:
    """Arrays from an MXNet NDArray file: a dict when it was saved with names, else a list.

    `name` is how error messages refer to the data; it defaults to the file's base name.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data, label = bytes(path_or_bytes), name or "The NDArray data"
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
        label = name or os.path.basename(os.fspath(path_or_bytes))
    return _Reader(data, label).read_file()


class _Reader:
    """A cursor over the file's bytes that turns every format problem into a UserError."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name
        self.pos = 0

    def error(self, problem: str) -> UserError:
        return UserError(f"{self.name} {problem}.")

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise self.error(
                f"is a truncated MXNet NDArray file ({len(self.data)} bytes; reading needs {end})"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def read_file(self) -> Arrays:
        if not self.data:
            raise self.error("is empty, not an MXNet NDArray file")
        (magic,) = self.unpack("Q")
        if magic != LIST_MAGIC:
            raise self.error(f"is not an MXNet NDArray file (bad magic 0x{magic:x})")
        _reserved, count = self.unpack("QQ")
        arrays = [self.read_array() for _ in range(count)]
        (name_count,) = self.unpack("Q")
        names = [self.read_name() for _ in range(name_count)]
        if not names:
            return arrays
        if len(names) != len(arrays):
            raise self.error(f"has {len(names)} names for {len(arrays)} arrays")
        return dict(zip(names, arrays))

    def read_name(self) -> str:
        (length,) = self.unpack("Q")
        try:
            return self.take(length).decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("has an array name that is not UTF-8") from None

    def read_array(self) -> np.ndarray:
        (magic,) = self.unpack("I")
        if magic in (V2_MAGIC, V3_MAGIC):
            self.check_storage_type()
            shape = self.read_shape("q", *self.unpack("i"))
        elif magic == V1_MAGIC:
            shape = self.read_shape("q", *self.unpack("i"))
        elif magic <= MAX_LEGACY_NDIM:
            shape = self.read_shape("I", magic)
        else:
            raise self.error(f"holds an MXNet NDArray of unknown format (magic 0x{magic:08x})")
        # Outside NumPy-shape mode (V3), ndim 0 marks an uninitialised array with nothing after it.
        if shape is None or (magic != V3_MAGIC and not shape):
            raise self.error("holds an uninitialised MXNet NDArray, which MXNet itself cannot load")
        _dev_type, _dev_id, flag = self.unpack("iii")  # any device: MXNet loads it onto the CPU
        if flag not in DTYPES:
            raise self.error(f"holds an MXNet NDArray with unsupported dtype flag {flag}")
        dtype = np.dtype(DTYPES[flag])
        raw = self.take(math.prod(shape) * dtype.itemsize)
        try:  # numpy refuses too many dims, or a zero-size shape whose other dims overflow
            array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        except ValueError:
            raise self.error(f"holds an MXNet NDArray with invalid shape {shape}") from None
        return array.astype(dtype.newbyteorder("="))

    def check_storage_type(self) -> None:
        (storage,) = self.unpack("i")
        if storage in SPARSE_STORAGE:
            raise self.error(
                f"holds a sparse MXNet NDArray (storage type {SPARSE_STORAGE[storage]}); "
                "only dense arrays are supported"
            )
        if storage != DENSE:
            raise self.error(f"holds an MXNet NDArray with unknown storage type {storage}")

    def read_shape(self, dim_format: str, ndim: int) -> tuple[int, ...] | None:
        """The dims, or None for NumPy-shape mode's unknown shape (ndim or a dim of -1)."""
        if ndim == -1:
            return None
        if ndim < 0:
            raise self.error(f"holds an MXNet NDArray with invalid ndim {ndim}")
        shape = self.unpack(f"{ndim}{dim_format}")
        if -1 in shape:
            return None
        if any(dim < 0 for dim in shape):
            raise self.error(f"holds an MXNet NDArray with invalid shape {shape}")
        return shape
