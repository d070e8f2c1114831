"""RecordIO-protobuf: framing, the Record wire format, the numba reader and the encoders."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from common.data.recordio_reader import RecordIOReader
from common.data.recordio_writer import encode_dense, encode_label_records, encode_sparse, frame
from common.errors import UserError
from tests.responses import decode_label_records

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "recordio"
MAGIC = b"\x0a\x23\xd7\xce"
SPEC_DENSE = bytes.fromhex(
    "0A23D7CE 2C000000 0A16 0A0676616C756573 120C 120A 0A080000803F00000040"
    " 1212 0A0676616C756573 1208 1206 0A0400004040"
)
SPEC_SPARSE = bytes.fromhex(
    "0A23D7CE 1F000000 0A1D 0A0676616C756573 1213 1211 0A080000A0400000E040 120201031A0104 00"
)


# ---------------------------------------------------------------- hand-made wire format


def vint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = b""
    while n > 0x7F:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def ld(field: int, body: bytes) -> bytes:
    return vint(field << 3 | 2) + vint(len(body)) + body


def f32s(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def entry(map_field: int, value: bytes, name: bytes = b"values") -> bytes:
    return ld(map_field, ld(1, name) + ld(2, value))


def dense_record(values: bytes, label: bytes | None = None) -> bytes:
    record = entry(1, ld(2, ld(1, values)))
    return record + (entry(2, ld(2, ld(1, label))) if label is not None else b"")


def sparse_record(values: list[float], keys: list[int], shape: list[int] | None) -> bytes:
    tensor = ld(1, f32s(*values)) + ld(2, b"".join(map(vint, keys)))
    tensor += ld(3, b"".join(map(vint, shape))) if shape is not None else b""
    return entry(1, ld(2, tensor))


def dmlc_frame(payload: bytes) -> bytes:
    """dmlc-core's RecordIOWriter::WriteRecord: split wherever the magic sits 4-aligned."""
    out, start = b"", 0
    for i in range(0, len(payload) // 4 * 4, 4):
        if payload[i : i + 4] == MAGIC:
            out += MAGIC + struct.pack("<I", (1 if start == 0 else 2) << 29 | i - start) + payload[start:i]
            start = i + 4
    last = len(payload) - start
    out += MAGIC + struct.pack("<I", (3 if start else 0) << 29 | last) + payload[start:]
    return out + bytes(-len(payload) % 4)


def cflags(body: bytes) -> list[int]:
    flags, pos = [], 0
    while pos < len(body):
        (word,) = struct.unpack_from("<I", body, pos + 4)
        flags.append(word >> 29)
        pos += 8 + ((word & 0x1FFFFFFF) + 3) // 4 * 4
    return flags


def parse(body: bytes, source: str = "request"):
    return RecordIOReader().parse(body, source)


def stream(body: bytes, batch_rows: int, chunk_bytes: int = 5, source: str = "s.rec"):
    return list(RecordIOReader(chunk_bytes=chunk_bytes).batches(io.BytesIO(body), source, batch_rows))


# ---------------------------------------------------------------- worked vectors, encoded by hand


def test_spec_dense_vector_byte_for_byte() -> None:
    assert encode_dense(np.array([[1.0, 2.0]], np.float32), np.array([3.0], np.float32)) == SPEC_DENSE
    batch = parse(SPEC_DENSE)
    assert batch.features.dtype == np.float32 and batch.features.tolist() == [[1.0, 2.0]]
    assert batch.labels.tolist() == [[3.0]] and (batch.first_row, batch.source) == (1, "request")


def test_spec_sparse_vector_byte_for_byte() -> None:
    matrix = sp.csr_matrix((np.array([5.0, 7.0], np.float32), [1, 3], [0, 2]), shape=(1, 4))
    assert encode_sparse(matrix) == SPEC_SPARSE
    batch = parse(SPEC_SPARSE)
    assert batch.is_sparse and batch.features.shape == (1, 4) and batch.labels is None
    assert batch.features.toarray().tolist() == [[0.0, 5.0, 0.0, 7.0]]


def test_frame_pads_to_four_bytes() -> None:
    assert frame(b"") == MAGIC + bytes(4)
    assert frame(b"abcde") == MAGIC + b"\x05\x00\x00\x00abcde\x00\x00\x00"
    assert len(frame(b"abcd")) == 12


# ---------------------------------------------------------------- dtypes, sparse, labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_dense_round_trip_per_dtype(dtype) -> None:
    features = (np.arange(12).reshape(4, 3) * 37 - 200).astype(dtype)
    labels = np.array([1, -2, 3, 4], dtype=dtype)
    batch = parse(encode_dense(features, labels))
    assert batch.features.dtype == np.float32 and batch.labels.dtype == np.float32
    np.testing.assert_array_equal(batch.features, features.astype(np.float32))
    np.testing.assert_array_equal(batch.labels, labels.astype(np.float32)[:, None])


def test_tensor_type_follows_dtype() -> None:
    tensor_field = {np.float32: 0x12, np.float64: 0x1A, np.int32: 0x3A, np.int64: 0x3A}
    for dtype, tag in tensor_field.items():
        assert encode_dense(np.ones((1, 1), dtype))[20] == tag
    with pytest.raises(ValueError, match="Unsupported dtype"):
        encode_dense(np.ones((1, 1), np.float16))
    with pytest.raises(ValueError, match="int32"):
        encode_dense(np.array([[1 << 40]]))


def test_sparse_round_trip_with_empty_rows_and_labels() -> None:
    rng = np.random.default_rng(3)
    dense = np.where(rng.random((7, 300)) < 0.05, rng.standard_normal((7, 300)), 0.0)
    dense[[2, 5]] = 0.0
    batch = parse(encode_sparse(sp.csr_matrix(dense.astype(np.float32)), np.arange(7.0)))
    assert batch.is_sparse and batch.features.shape == (7, 300)
    np.testing.assert_array_equal(batch.features.toarray(), dense.astype(np.float32))
    assert batch.labels[:, 0].tolist() == list(range(7))


def test_mixed_dense_and_sparse_rows_give_csr() -> None:
    rows = [dense_record(f32s(1, 0, 2)), sparse_record([4.0], [1], [3]), dense_record(f32s(5, 6, 7))]
    body = b"".join(map(frame, rows))
    batch = parse(body)
    assert batch.is_sparse and batch.features.dtype == np.float32
    assert batch.features.toarray().tolist() == [[1, 0, 2], [0, 4, 0], [5, 6, 7]]


def test_empty_sparse_row_with_shape_is_all_zero() -> None:
    batch = parse(frame(sparse_record([], [], [5])))
    assert batch.is_sparse and batch.features.shape == (1, 5) and batch.features.nnz == 0


def test_multi_dimensional_shape_flattens_row_major() -> None:
    batch = parse(frame(sparse_record([1.0, 2.0], [0, 5], [2, 3])))
    assert batch.features.toarray().tolist() == [[1, 0, 0, 0, 0, 2]]
    shaped_dense = entry(1, ld(2, ld(1, f32s(1, 2, 3, 4)) + ld(3, vint(2) + vint(2))))
    assert parse(frame(shaped_dense)).features.tolist() == [[1, 2, 3, 4]]


def test_labels_absent_partial_and_vector() -> None:
    assert parse(encode_dense(np.ones((2, 2), np.float32))).labels is None
    partial = frame(dense_record(f32s(1), f32s(1))) + frame(dense_record(f32s(2)))
    assert parse(partial).labels is None
    batch = parse(encode_dense(np.ones((2, 1), np.float32), np.array([[1, 2], [3, 4]], np.float32)))
    assert batch.labels.tolist() == [[1, 2], [3, 4]]


# ---------------------------------------------------------------- framing and wire-format variants


def test_multi_part_records_are_rejoined() -> None:
    magic_value = struct.unpack("<f", MAGIC)[0]
    rows = np.array([[magic_value, 1.0, magic_value, 2.0], [3.0, 4.0, 5.0, magic_value]], np.float32)
    single = encode_dense(rows, np.array([magic_value, 7.0], np.float32))
    size = len(single) // 2
    body = b"".join(dmlc_frame(single[i + 8 : i + size]) for i in (0, size))
    assert cflags(body) == [1, 2, 2, 3, 1, 3]
    batch = parse(body)
    np.testing.assert_array_equal(batch.features, rows)
    assert batch.labels[:, 0].tolist() == [magic_value, 7.0]
    for chunk in (1, 3, 17):
        parts = stream(body, 1, chunk)
        np.testing.assert_array_equal(np.concatenate([b.features for b in parts]), rows)


def test_missing_final_padding_is_accepted() -> None:
    body = frame(SPEC_SPARSE[8:-1] + b"\x50\x01") * 2  # 33-byte payloads: 3 bytes of padding
    for cut in (1, 2, 3):
        assert parse(body[:-cut]).features.shape == (2, 4)
        assert [len(b) for b in stream(body[:-cut], 5, 3)] == [2]


def test_empty_input_is_zero_records() -> None:
    batch = parse(b"")
    assert batch.features.shape == (0, 0) and batch.features.dtype == np.float32 and batch.labels is None
    assert stream(b"", 10) == []


def test_unpacked_repeated_fields() -> None:
    values = b"".join(b"\x0d" + f32s(v) for v in (1.5, 2.5))  # field 1, wire type 5, one by one
    keys = b"\x10\x02" + b"\x10\x00"
    sparse = entry(1, ld(2, values + keys + b"\x18\x04"))
    doubles = entry(1, ld(3, b"\x09" + struct.pack("<d", -0.5) + ld(1, struct.pack("<d", 8.0))))
    ints = entry(1, ld(7, b"\x08\x05" + b"\x08" + vint(-3) + ld(1, vint(7) + vint(-1))))
    assert parse(frame(sparse)).features.toarray().tolist() == [[2.5, 0, 1.5, 0]]
    assert parse(frame(doubles)).features.tolist() == [[-0.5, 8.0]]
    assert parse(frame(ints)).features.tolist() == [[5, -3, 7, -1]]
    wide = entry(1, ld(7, ld(1, vint(1 << 40 | 5))))  # protobuf keeps the low 32 bits of an int32 varint
    assert parse(frame(wide)).features.tolist() == [[5]]


def test_fields_in_any_order_and_unknown_fields_skipped() -> None:
    tensor = ld(3, vint(6)) + ld(2, vint(4) + vint(1)) + ld(1, f32s(9, 8)) + b"\x20\x07" + b"\x2d" + f32s(0)
    value = b"\x50\x01" + ld(2, tensor)  # unknown varint field 10 first
    features = ld(1, ld(2, value) + ld(1, b"values"))  # map entry: value before key
    other = ld(1, ld(1, b"other") + ld(2, ld(2, ld(1, f32s(1, 2, 3)))))
    label = ld(2, ld(2, ld(2, ld(1, f32s(4)))) + ld(1, b"values"))
    wrong_wire_type = b"\x08\x40"  # field 1 as a varint: protobuf skips it as an unknown field
    group = b"\x5b" + b"\x08\x01" + b"\x5c"  # a (deprecated) group, field 11
    record = ld(5, b"{}") + label + ld(3, b"uid-1") + features + other + b"\x49" + bytes(8) + ld(4, b"meta")
    record += wrong_wire_type + group
    batch = parse(frame(record))
    assert batch.features.toarray().tolist() == [[0, 8, 0, 0, 9, 0]] and batch.labels.tolist() == [[4.0]]


def test_last_values_entry_and_last_tensor_win() -> None:
    value = ld(3, ld(1, struct.pack("<d", 1.0))) + ld(2, ld(1, f32s(2, 3)))
    record = entry(1, ld(2, ld(1, f32s(0)))) + entry(1, value)
    assert parse(frame(record)).features.tolist() == [[2, 3]]


def test_streaming_across_chunk_boundaries() -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((23, 5)).astype(np.float32)
    body = encode_dense(features, np.arange(23, dtype=np.float32))
    reference = parse(body, "s.rec")
    for chunk, rows in ((1, 4), (7, 5), (64, 23), (1000, 100)):
        batches = stream(body, rows, chunk)
        assert [b.first_row for b in batches] == list(range(1, 24, rows))
        assert all(len(b) <= rows and b.source == "s.rec" for b in batches)
        np.testing.assert_array_equal(np.concatenate([b.features for b in batches]), reference.features)
        np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), reference.labels)


def test_streaming_from_a_stream_without_readinto() -> None:
    class ReadOnly:
        def __init__(self, body: bytes) -> None:
            self.inner = io.BytesIO(body)

        def read(self, n_bytes: int) -> bytes:
            return self.inner.read(n_bytes)

    body = encode_dense(np.arange(10, dtype=np.float32).reshape(5, 2))
    batches = list(RecordIOReader(chunk_bytes=9).batches(ReadOnly(body), "r", 2))  # type: ignore[arg-type]
    assert [b.features.tolist() for b in batches] == [[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[8, 9]]]


def test_streaming_batches_are_dense_or_sparse_on_their_own() -> None:
    body = frame(dense_record(f32s(1, 2))) + frame(sparse_record([3.0], [0], [2]))
    batches = stream(body, 1, 4)
    assert [b.is_sparse for b in batches] == [False, True] and [b.first_row for b in batches] == [1, 2]


WARM_UP_CHECK = """
import io, json
import numpy as np, scipy.sparse as sp
from common.data import recordio_kernel
from common.data.recordio_reader import RecordIOReader, warm_up
from common.data.recordio_writer import encode_dense, encode_sparse

kernels = {name: getattr(recordio_kernel, name) for name in ("_scan_frames", "_join_parts", "_decode")}
compiled = lambda: {name: len(kernel.signatures) for name, kernel in kernels.items()}
before = compiled()
warm_up()
after = compiled()
reader = RecordIOReader()
for body in (encode_dense(np.arange(6.0).reshape(3, 2), np.ones(3)),
             encode_sparse(sp.random(4, 9, density=0.3, format="csr", random_state=0, dtype=np.float32))):
    reader.parse(body)
    list(reader.batches(io.BytesIO(body), "check", 2))
print(json.dumps([before, after, compiled()]))
"""


def test_warm_up_compiles_every_kernel_a_request_uses() -> None:
    """In a fresh process: nothing compiled before warm_up, every kernel after (multi-part records included),
    and reading dense and sparse bodies afterwards compiles nothing more."""
    done = subprocess.run([sys.executable, "-c", WARM_UP_CHECK], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    before, after, afterwards = json.loads(done.stdout.splitlines()[-1])
    assert before == {"_scan_frames": 0, "_join_parts": 0, "_decode": 0}
    assert all(count >= 1 for count in after.values()), after
    assert afterwards == after


# ---------------------------------------------------------------- errors: one sentence naming where


def error(body: bytes, source: str = "f.rec") -> str:
    with pytest.raises(UserError) as caught:
        parse(body, source)
    return caught.value.message


ONE = frame(dense_record(f32s(1, 2)))


@pytest.mark.parametrize("body,message", [
    (ONE + b"\x0b\x23\xd7\xce" + bytes(4),
     "Byte offset 32 of f.rec: expected the RecordIO magic 0xCED7230A but found 0xCED7230B."),
    (ONE + MAGIC + b"\x00\x00", "Byte offset 32 of f.rec: the data ends inside a RecordIO header (6 of 8 bytes)."),
    (MAGIC + b"\x10\x00\x00\x00" + bytes(8),
     "Byte offset 0 of f.rec: the record length is 16 bytes but only 8 remain."),
    (MAGIC + struct.pack("<I", 2 << 29 | 4) + bytes(4),
     "Byte offset 0 of f.rec: RecordIO cflag 2 does not fit here (expected 0 or 1)."),
    (MAGIC + struct.pack("<I", 1 << 29) + MAGIC + struct.pack("<I", 0),
     "Byte offset 8 of f.rec: RecordIO cflag 0 does not fit here (expected 2 or 3)."),
    (ONE + MAGIC + struct.pack("<I", 1 << 29 | 4) + bytes(4),
     "Byte offset 44 of f.rec: the data ends inside the multi-part record starting at byte offset 32."),
    (ONE + frame(b"\x0a\x10\x0a"), "Row 2 of f.rec: the record is not a valid protobuf Record."),
    (ONE + frame(b"\x0b"), "Row 2 of f.rec: the record is not a valid protobuf Record."),
    (frame(dense_record(f32s(1)) + b"\x00\x00"), "Row 1 of f.rec: the record is not a valid protobuf Record."),
    (frame(ld(3, b"uid")), 'Row 1 of f.rec: the record has no features["values"].'),
    (frame(entry(1, ld(2, ld(1, f32s(1))), b"other")), 'Row 1 of f.rec: the record has no features["values"].'),
    (frame(entry(1, ld(9, ld(1, b"abc")))),
     'Row 1 of f.rec: features["values"] is a bytes Value, not a float32, float64 or int32 tensor.'),
    (frame(dense_record(f32s(1)) + entry(2, ld(9, b""))),
     'Row 1 of f.rec: label["values"] is a bytes Value, not a float32, float64 or int32 tensor.'),
    (frame(entry(1, b"")), 'Row 1 of f.rec: features["values"] holds no tensor.'),
    (ONE + ONE + frame(sparse_record([1.0], [3], None)), "Row 3 of f.rec: sparse features have keys but no shape."),
    (frame(sparse_record([1.0, 2.0], [3, 12], [10])), "Row 1 of f.rec: sparse features have key 12 but shape is [10]."),
    (frame(sparse_record([1.0], [6], [2, 3])), "Row 1 of f.rec: sparse features have key 6 but shape is [2, 3]."),
    (frame(sparse_record([1.0], [(1 << 64) - 1], [2])),
     "Row 1 of f.rec: sparse features have key 18446744073709551615 but shape is [2]."),
    (frame(sparse_record([1.0, 2.0], [1, 2, 3], [4])), "Row 1 of f.rec: sparse features have 3 keys but 2 values."),
    (frame(sparse_record([1.0], [1], [1 << 20, 1 << 20])),
     "Row 1 of f.rec: sparse features have shape [1048576, 1048576], more than 2147483647 features."),
    (frame(entry(1, ld(2, ld(1, f32s(1, 2, 3)) + ld(3, vint(2))))),
     "Row 1 of f.rec: dense features have 3 values but shape is [2]."),
    (frame(dense_record(f32s(1)) + entry(2, ld(2, ld(1, f32s(1)) + ld(2, vint(0)) + ld(3, vint(1))))),
     'Row 1 of f.rec: label["values"] has keys, but labels must be dense.'),
    (ONE + ONE + frame(dense_record(f32s(1, 2, 3))),
     "Row 3 of f.rec: the record has 3 features but earlier rows have 2."),
    (ONE + frame(sparse_record([1.0], [0], [5])), "Row 2 of f.rec: the record has 5 features but earlier rows have 2."),
    (frame(dense_record(f32s(1), f32s(1))) + frame(dense_record(f32s(1))) + frame(dense_record(f32s(1), f32s(1, 2))),
     "Row 3 of f.rec: the record has 2 label values but earlier rows have 1."),
    (ONE + frame(dense_record(f32s(1, 2, 3))) + frame(b"\x0b"),
     "Row 2 of f.rec: the record has 3 features but earlier rows have 2."),
    (frame(entry(1, ld(2, ld(1, b"\x00\x00\x80")))), "Row 1 of f.rec: the record is not a valid protobuf Record."),
])
def test_error_messages(body: bytes, message: str) -> None:
    assert error(body) == message


def test_streaming_errors_name_the_absolute_row_and_offset() -> None:
    body = ONE * 5 + frame(dense_record(f32s(1, 2, 3)))
    with pytest.raises(UserError, match=r"^Row 6 of s.rec: the record has 3 features but earlier rows have 2\.$"):
        stream(body, 2, 3)
    with pytest.raises(UserError, match=r"^Byte offset 160 of s.rec: the data ends inside a RecordIO header"):
        stream(ONE * 5 + b"\x0a\x23", 2, 3)
    batches = RecordIOReader(chunk_bytes=8).batches(io.BytesIO(ONE * 3 + b"junkjunk"), "s.rec", 2)
    assert len(next(batches)) == 2
    with pytest.raises(UserError, match=r"^Byte offset 96 of s.rec: expected the RecordIO magic"):
        next(batches)


def test_encoder_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        encode_dense(np.ones(3, np.float32))
    with pytest.raises(ValueError):
        encode_dense(np.ones((3, 2), np.float32), np.ones(2, np.float32))
    with pytest.raises(ValueError):
        encode_sparse(np.ones((2, 2)))
    with pytest.raises(ValueError):
        encode_label_records({"a": np.ones(2), "b": np.ones(3)})


# ---------------------------------------------------------------- round trips and the response format


def test_round_trip_random() -> None:
    rng = np.random.default_rng(11)
    features = rng.standard_normal((50, 17))
    batch = parse(encode_dense(features, rng.integers(0, 3, 50)))
    np.testing.assert_array_equal(batch.features, features.astype(np.float32))
    matrix = sp.random(40, 1000, density=0.01, format="csr", random_state=1, dtype=np.float64)
    np.testing.assert_array_equal(parse(encode_sparse(matrix)).features.toarray(), matrix.toarray().astype(np.float32))


def test_label_records_response_format() -> None:
    one = encode_label_records({"score": np.array([0.5])})
    assert one == frame(entry(2, ld(2, ld(1, f32s(0.5))), b"score"))
    columns = {"closest_cluster": np.array([1, 0, 2]), "distance_to_cluster": np.array([0.5, 1.5, 2.5], np.float64),
               "projection": np.arange(6, dtype=np.float32).reshape(3, 2)}
    rows = decode_label_records(encode_label_records(columns))
    assert rows == [{"closest_cluster": [1.0], "distance_to_cluster": [0.5], "projection": [0.0, 1.0]},
                    {"closest_cluster": [0.0], "distance_to_cluster": [1.5], "projection": [2.0, 3.0]},
                    {"closest_cluster": [2.0], "distance_to_cluster": [2.5], "projection": [4.0, 5.0]}]
    assert encode_label_records({"score": np.zeros(0)}) == b""
    # The response records carry only labels, so our reader (which requires features) refuses them.
    assert error(one) == 'Row 1 of f.rec: the record has no features["values"].'


# ---------------------------------------------------------------- files written by the SageMaker SDK


@pytest.mark.parametrize("name", ["dense_float32_labels", "dense_float64", "dense_int32", "sparse_float32_labels"])
def test_reads_files_written_by_the_sagemaker_sdk(name: str) -> None:
    body = (FIXTURES / f"{name}.rec").read_bytes()
    expected = np.load(FIXTURES / f"{name}.npz")
    batch = parse(body, f"{name}.rec")
    if "features" in expected:
        np.testing.assert_array_equal(batch.features, expected["features"].astype(np.float32))
        assert encode_dense(expected["features"], expected.get("labels")) == body
    else:
        parts = (expected["data"], expected["indices"], expected["indptr"])
        matrix = sp.csr_matrix(parts, shape=tuple(expected["shape"]))
        assert batch.is_sparse
        np.testing.assert_array_equal(batch.features.toarray(), matrix.toarray())
        assert encode_sparse(matrix, expected["labels"]) == body
    if "labels" in expected:
        np.testing.assert_array_equal(batch.labels[:, 0], expected["labels"].astype(np.float32))
    else:
        assert batch.labels is None
