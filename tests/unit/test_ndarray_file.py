"""common/data/ndarray_file.py against files written by real MXNet 1.9.1 (tests/fixtures/ndarray/)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest

from common.data.ndarray_file import DTYPES, dump_ndarrays, load_ndarrays, save_ndarrays
from common.errors import UserError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ndarray"
# Written by mx.nd.save in its default mode: our writer must produce the same bytes.
MXNET_WRITTEN = [
    "kmeans_2x3",
    "kmeans_10x20",
    "byom_kmeans",
    "pca_dict",
    "pca_dict_no_mean",
    "fm_params",
    "dtype_float64",
    "dtype_int32",
    "all_dtypes",
    "several",
    "zero_size",
    "empty_list",
]
# Read-only encodings: V1 and legacy shapes (hand-built, loaded by MXNet), a GPU context,
# and V3 as written in NumPy-shape mode.
MXNET_READABLE = ["v1_magic", "legacy_shape", "gpu_context", "np_shape_v3"]


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / f"{name}.nd").read_bytes()


def expected(name: str) -> list[np.ndarray] | dict[str, np.ndarray]:
    """What MXNet loaded from the fixture, as the generator recorded it."""
    with np.load(FIXTURES / f"{name}.npz") as npz:
        names = [str(n) for n in npz["names"]]
        arrays = [npz[f"array_{i}"] for i in range(len(npz.files) - 1)]
    return dict(zip(names, arrays)) if names else arrays


def assert_same(actual: list | dict, wanted: list | dict) -> None:
    assert type(actual) is type(wanted)
    if isinstance(wanted, dict):
        assert list(actual) == list(wanted)
        actual, wanted = list(actual.values()), list(wanted.values())
    assert len(actual) == len(wanted)
    for got, want in zip(actual, wanted):
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", MXNET_WRITTEN)
def test_writer_matches_mxnet_byte_for_byte(name: str) -> None:
    assert dump_ndarrays(expected(name)) == fixture_bytes(name)


@pytest.mark.parametrize("name", MXNET_WRITTEN + MXNET_READABLE)
def test_loader_reads_mxnet_files_exactly(name: str) -> None:
    assert_same(load_ndarrays(FIXTURES / f"{name}.nd"), expected(name))


def test_byom_centers_are_float32_as_mxnet_converts_them() -> None:
    centers = np.load(FIXTURES / "byom_kmeans_centers_float64.npy")
    (loaded,) = load_ndarrays(fixture_bytes("byom_kmeans"))
    assert centers.dtype == np.float64
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, centers.astype(np.float32))


def test_pca_dict_keeps_names_in_order() -> None:
    loaded = load_ndarrays(str(FIXTURES / "pca_dict.nd"))
    assert list(loaded) == ["s", "v", "mean"]
    assert [a.shape for a in loaded.values()] == [(3,), (5, 3), (1, 5)]


def test_kmeans_2x3_layout_field_by_field() -> None:
    data = fixture_bytes("kmeans_2x3")
    assert len(data) == 96
    assert struct.unpack_from("<QQQ", data, 0) == (0x112, 0, 1)
    assert struct.unpack_from("<IiI", data, 24) == (0xF993FAC9, 0, 2)
    assert struct.unpack_from("<qq", data, 36) == (2, 3)
    assert struct.unpack_from("<iii", data, 52) == (1, 0, 0)
    assert struct.unpack_from("<6f", data, 64) == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    assert struct.unpack_from("<Q", data, 88) == (0,)
    assert dump_ndarrays([np.arange(6, dtype=np.float32).reshape(2, 3)]) == data


@pytest.mark.parametrize("dtype", sorted(set(DTYPES.values())))
def test_round_trip_every_dtype(dtype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    (loaded,) = load_ndarrays(dump_ndarrays([array]))
    assert loaded.dtype == array.dtype
    np.testing.assert_array_equal(loaded, array)


def test_round_trip_list_and_dict() -> None:
    arrays = [np.ones(3), np.arange(10, dtype=np.int64).reshape(1, 2, 1, 5, 1), np.zeros((0, 4))]
    assert_same(load_ndarrays(dump_ndarrays(arrays)), arrays)
    named = {"s": np.float32([1, 2]), "v": np.eye(2, dtype=np.float32), "ünï": np.int8([3])}
    assert_same(load_ndarrays(dump_ndarrays(named)), named)


def test_writer_normalises_layout_and_byte_order() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    reference = dump_ndarrays([array])
    assert dump_ndarrays([np.asfortranarray(array)]) == reference
    assert dump_ndarrays([array.astype(">f4")]) == reference
    assert dump_ndarrays([np.arange(12, dtype=np.float32).reshape(2, 6)[:, ::2] / 2]) == reference


def test_save_to_path_and_file_object(tmp_path: Path) -> None:
    arrays = {"mean": np.float32([[1.5, 2.5]])}
    save_ndarrays(tmp_path / "model_algo-1", arrays)
    buffer = io.BytesIO()
    save_ndarrays(buffer, arrays)
    assert (tmp_path / "model_algo-1").read_bytes() == buffer.getvalue() == dump_ndarrays(arrays)
    assert_same(load_ndarrays(bytearray(buffer.getvalue())), arrays)


@pytest.mark.parametrize(
    "array", [np.float32(1.0), np.zeros(2, np.complex64), np.zeros(2, np.uint16)]
)
def test_writer_refuses_what_mxnet_cannot_load(array: np.ndarray) -> None:
    with pytest.raises(ValueError, match="An MXNet NDArray file cannot hold"):
        dump_ndarrays([array])


def patched(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    buffer = bytearray(data)
    struct.pack_into(fmt, buffer, offset, *values)
    return bytes(buffer)


KMEANS = fixture_bytes("kmeans_2x3")
NAMED = dump_ndarrays({"s": np.float32([1.0])})  # its name "s" is the last byte
ERROR_CASES = {
    "bad magic": (
        b"not an ndarray file, honest",
        "is not an MXNet NDArray file (bad magic 0x6e206e6120746f6e).",
    ),
    "empty": (b"", "is empty, not an MXNet NDArray file."),
    "truncated data": (
        KMEANS[:86],
        "is a truncated MXNet NDArray file (86 bytes; reading needs 88).",
    ),
    "no name count": (
        KMEANS[:88],
        "is a truncated MXNet NDArray file (88 bytes; reading needs 96).",
    ),
    "short header": (
        KMEANS[:12],
        "is a truncated MXNet NDArray file (12 bytes; reading needs 24).",
    ),
    "array magic": (
        patched(KMEANS, 24, "<I", 0xDEADBEEF),
        "holds an MXNet NDArray of unknown format (magic 0xdeadbeef).",
    ),
    "storage type": (
        patched(KMEANS, 28, "<i", 5),
        "holds an MXNet NDArray with unknown storage type 5.",
    ),
    "dtype flag": (
        patched(KMEANS, 60, "<i", 12),
        "holds an MXNet NDArray with unsupported dtype flag 12.",
    ),
    "negative dim": (
        patched(KMEANS, 36, "<q", -3),
        "holds an MXNet NDArray with invalid shape (-3, 3).",
    ),
    "impossible shape": (
        patched(fixture_bytes("zero_size"), 36, "<q", 2**62),
        f"holds an MXNet NDArray with invalid shape ({2**62}, 0).",
    ),
    "uninitialised": (
        struct.pack("<QQQIiiQ", 0x112, 0, 1, 0xF993FAC9, 0, -1, 0),
        "holds an uninitialised MXNet NDArray, which MXNet itself cannot load.",
    ),
    "ndim 0": (
        struct.pack("<QQQIiiQ", 0x112, 0, 1, 0xF993FAC9, 0, 0, 0),
        "holds an uninitialised MXNet NDArray, which MXNet itself cannot load.",
    ),
    "names mismatch": (
        KMEANS[:88] + struct.pack("<QQ", 2, 1) + b"a" + struct.pack("<Q", 1) + b"b",
        "has 2 names for 1 arrays.",
    ),
    "bad name": (NAMED[:-1] + b"\xff", "has an array name that is not UTF-8."),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_error_messages(case: str, tmp_path: Path) -> None:
    data, message = ERROR_CASES[case]
    (tmp_path / "model_algo-1").write_bytes(data)
    with pytest.raises(UserError) as raised:
        load_ndarrays(tmp_path / "model_algo-1")
    assert str(raised.value) == f"model_algo-1 {message}"


@pytest.mark.parametrize(
    ("name", "storage"), [("sparse_row_sparse", "row_sparse"), ("sparse_csr", "csr")]
)
def test_mxnet_sparse_files_are_rejected(name: str, storage: str) -> None:
    with pytest.raises(UserError) as raised:
        load_ndarrays(fixture_bytes(name), name="model_algo-1")
    assert str(raised.value) == (
        f"model_algo-1 holds a sparse MXNet NDArray (storage type {storage}); "
        "only dense arrays are supported."
    )


def test_bytes_are_named_generically() -> None:
    with pytest.raises(UserError, match=r"^The NDArray data is not an MXNet NDArray file"):
        load_ndarrays(b"\x00" * 24)
