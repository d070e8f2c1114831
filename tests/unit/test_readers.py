"""CSV, JSON, JSON Lines and libsvm readers on tiny hand-made inputs, errors asserted exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest

from common.data.content_types import MediaType
from common.data.csv_reader import CsvReader
from common.data.json_reader import JsonLinesReader, JsonReader
from common.data.libsvm_reader import LibsvmReader
from common.data.registry import reader_for
from common.errors import UnsupportedContentType, UserError


def test_csv_numbers_labels_blank_lines_and_crlf() -> None:
    batch = CsvReader(label_size=1).parse(b"1,2.5,-3e2\r\n\n0, .5 ,nan\n")
    np.testing.assert_array_equal(batch.labels, [[1.0], [0.0]])
    np.testing.assert_array_equal(batch.features[0], [2.5, -300.0])
    assert batch.features.dtype == np.float32 and np.isnan(batch.features[1, 1])


def test_csv_empty_field_is_nan_and_no_trailing_newline() -> None:
    batch = CsvReader().parse(b"1,,3\n4,5,6")
    assert batch.features.shape == (2, 3) and np.isnan(batch.features[0, 1])


def test_csv_streaming_across_chunks_matches_whole_parse() -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((500, 7)).astype(np.float32)
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in data).encode() + b"\n"
    reader = CsvReader(label_size=2, chunk_bytes=97)
    batches = list(reader.batches(io.BytesIO(text), "part.csv", batch_rows=64))
    starts = [b.first_row for b in batches]
    assert starts == list(np.cumsum([1] + [len(b) for b in batches[:-1]]))
    features = np.concatenate([b.features for b in batches])
    np.testing.assert_array_equal(features, data[:, 2:])
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), data[:, :2])


@pytest.mark.parametrize("body,message", [
    (b"a,b,c\n1,2,3\n", "Line 1 of train.csv looks like a header ('a,b,c'); CSV data must have no header row, "
                        "label first."),
    (b"1,2,3\n4,x,6\n", "Line 2 of train.csv, column 2: 'x' is not a number."),
    (b"1,2,3\n4,5\n", "Line 2 of train.csv has 2 fields but earlier lines have 3; every row needs the same columns."),
    (b"1,2,3\n\n4,5,6,7\n", "Line 3 of train.csv has 4 fields but earlier lines have 3; every row needs the same "
                            "columns."),
])
def test_csv_errors_name_file_and_line(body: bytes, message: str) -> None:
    with pytest.raises(UserError) as caught:
        list(CsvReader(chunk_bytes=4).batches(io.BytesIO(body), "train.csv", 10))
    assert caught.value.message == message


def test_csv_label_size_too_large() -> None:
    with pytest.raises(UserError, match="label_size=2 leaves no feature columns"):
        CsvReader(label_size=2).parse(b"1,2\n")


def test_json_forms_dense_and_mixed_sparse() -> None:
    body = b'{"instances": [{"features": [1, 2, 0]}, {"data": {"features": {"values": [3, 4, 5]}}}]}'
    batch = JsonReader().parse(body)
    np.testing.assert_array_equal(batch.features, [[1, 2, 0], [3, 4, 5]])
    sparse = JsonReader().parse(b'{"instances": [{"data": {"features": {"keys": [0, 2], "shape": [3], '
                                b'"values": [1, 4]}}}, [7, 8, 9]]}')
    assert sparse.is_sparse
    np.testing.assert_array_equal(sparse.dense(), [[1, 0, 4], [7, 8, 9]])
    np.testing.assert_array_equal(JsonReader().parse(b"[[1, 2], [3, 4]]").features, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(JsonReader().parse(b"[1, 2]").features, [[1, 2]])
    np.testing.assert_array_equal(JsonReader().parse(b'{"features": [5, 6]}').features, [[5, 6]])


def test_json_lines() -> None:
    body = b'{"features": [1.5, 2]}\n\n{"data": {"features": {"keys": [1], "shape": [2], "values": [4]}}}\n'
    np.testing.assert_array_equal(JsonLinesReader().parse(body).dense(), [[1.5, 2], [0, 4]])


@pytest.mark.parametrize("body,message", [
    (b"{not json", "The body of request is not valid JSON: Expecting property name enclosed in double quotes."),
    (b'{"instances": [{"features": [1, 2]}, {"features": [1]}]}', "Row 2 of request has 1 features but row 1 has 2."),
    (b'{"instances": [{"feature": [1]}]}', 'Row 1 of request has no \'features\' (expected {"features": [...]} or '
                                          '{"data": {"features": {"values": [...]}}}).'),
    (b'{"instances": [{"features": [1, "a"]}]}', "Row 1 of request: features must be a list of numbers."),
    (b'{"instances": [{"data": {"features": {"keys": [5], "shape": [3], "values": [1]}}}]}',
     "Row 1 of request: key 5 is outside the shape [3]."),
    (b'{"instances": [{"data": {"features": {"keys": [1], "values": [1]}}}]}',
     "Row 1 of request: sparse features need a 'shape'."),
    (b'"text"', "The JSON body of request must be an object with 'instances' or a list of rows."),
])
def test_json_errors(body: bytes, message: str) -> None:
    with pytest.raises(UserError) as caught:
        JsonReader().parse(body)
    assert caught.value.message == message


def test_libsvm_training_and_request_rows() -> None:
    batch = LibsvmReader().parse(b"1 0:1.5 3:2\n0 1:-1\n")
    np.testing.assert_array_equal(batch.labels, [[1], [0]])
    np.testing.assert_array_equal(batch.dense(), [[1.5, 0, 0, 2], [0, -1, 0, 0]])
    request = LibsvmReader(labelled=False, width=5).parse(b"0:1 4:2\n9 1:3\n")
    np.testing.assert_array_equal(request.dense(), [[1, 0, 0, 0, 2], [0, 3, 0, 0, 0]])
    with pytest.raises(UserError, match="Line 2 of request: 'x:1' is not index:value."):
        LibsvmReader().parse(b"1 0:1\n1 x:1\n")


def test_registry_and_content_type_parameters() -> None:
    reader = reader_for(MediaType.parse("text/CSV; label_size=1"))
    assert isinstance(reader, CsvReader) and reader.label_size == 1
    assert isinstance(reader_for(MediaType.parse("application/JSONLINES")), JsonLinesReader)
    with pytest.raises(UnsupportedContentType) as caught:
        reader_for(MediaType.parse("image/png"))
    assert caught.value.status == 415 and caught.value.message == "Content type 'image/png' is not supported."


def test_big_csv_blocks_are_parsed_on_threads_with_continuous_line_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    rng = np.random.default_rng(2)
    data = rng.standard_normal((40_000, 6)).astype(np.float32)
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in data).encode() + b"\n"
    assert len(text) > (1 << 20)
    batch = CsvReader(label_size=1).parse(text)
    np.testing.assert_array_equal(batch.features, data[:, 1:])
    lines = text.split(b"\n")
    lines[39_000] = b"1,2,oops,4,5,6"
    with pytest.raises(UserError) as caught:
        CsvReader().parse(b"\n".join(lines))
    assert caught.value.message == "Line 39001 of request, column 3: 'oops' is not a number."


def test_csv_numbers_in_every_spelling_parse_as_python_does() -> None:
    """The plain-decimal fast path and the general path agree with float() (to float32) on every form."""
    rng = np.random.default_rng(7)
    words = ["0", "-0", "5.", ".5", "-.5", "+1.25", "1e3", "-2.5E-3", " 7.5 ", "nan", "-inf", "Infinity",
             "123456789012345678", "1234567890123456789012", "0.000000000000000000001", "3.14159265358979323846",
             "00012.5000", "1.5e+38", "9" * 18 + ".5"]
    for _ in range(300):
        digits = "".join(rng.choice(list("0123456789"), rng.integers(1, 20)))
        cut = int(rng.integers(0, len(digits) + 1))
        words.append(("-" if rng.random() < 0.5 else "") + digits[:cut] + "." + digits[cut:])
    body = "\n".join(",".join(words[i:i + 4]) for i in range(0, len(words) - len(words) % 4, 4)).encode()
    parsed = CsvReader().parse(body).dense().ravel()
    expected = np.array([float(w) for w in words[:len(parsed)]], np.float64).astype(np.float32)
    assert np.array_equal(parsed, expected, equal_nan=True)


def test_csv_digit_runs_of_every_length_parse_exactly() -> None:
    """Runs of 0-11 digits before and after the point, on one line and one per line: the plain-decimal path
    must stop at the first non-digit byte and hand runs over 18 digits to the general path."""
    words = [("-" if (a + b) % 3 == 0 else "") + "9876543210123456789"[:a] + "." + "1234567890987654321"[:b]
             for a in range(0, 12) for b in range(0, 12) if a + b > 0]
    for body in (",".join(words).encode(), "\n".join(words).encode()):
        parsed = CsvReader().parse(body).dense().ravel()
        assert np.array_equal(parsed, np.array([float(w) for w in words]).astype(np.float32))
    for bad in (b"1,2,3\n1,12345678x,3", b"1,2,3\n1,1234567.8x9,3", b"1,2,3\n123456789012345678;,1,1"):
        with pytest.raises(UserError, match="is not a number"):
            CsvReader().parse(bad)


def test_byte_counts_in_words_match_numpy() -> None:
    from common.data.csv_kernel import count_bytes

    rng = np.random.default_rng(5)
    for size in (0, 1, 7, 8, 127, 128, 129, 255, 256, 1000, 4099):
        for alphabet in ([10, 58], [10, 58, 32, 49], list(range(256))):
            data = rng.choice(np.array(alphabet, np.uint8), size)
            for start in (0, 3):  # unaligned views too
                part = data[start:]
                assert count_bytes(part, 10, 58) == (int((part == 10).sum()), int((part == 58).sum()))
    assert count_bytes(np.full(4096, 10, np.uint8), 10, 10) == (4096, 4096)  # every lane full: no byte overflow


def test_libsvm_kernels_stop_at_the_end_of_their_arrays() -> None:
    from common.data import libsvm_kernel as kernel
    from common.data.csv_kernel import INF_WORD, INFINITY_WORD, NAN_WORD

    buf = np.frombuffer(b"1 0:1 1:2\n0 2:3 3:4\n1 4:5\n", np.uint8)
    for rows, pairs in ((3, 5), (1, 5), (3, 3), (0, 0)):
        arrays = [np.full(n + 1, -9, dtype) for n, dtype in  # one sentinel past each array's end
                  ((rows + 1, np.int64), (pairs, np.int32), (pairs, np.float32), (rows, np.float32),
                   (rows, np.float32), (rows, np.int64))]
        views = [a[:-1] for a in arrays]
        status = kernel.parse_lines(buf, True, *views, NAN_WORD, INF_WORD, INFINITY_WORD)[0]
        assert status == (kernel.OK if (rows, pairs) == (3, 5) else kernel.FULL)
        assert all(a[-1] == -9 for a in arrays)
    indptr, indices, values, labels, weights, qids = kernel.allocate(4, 4, 2)
    ok = (np.array([0, 2]), np.array([0, 2]), np.array([2, 2]), np.array([2, 2]))
    assert kernel.join(indptr, indices, values, labels, weights, qids, *ok) == (4, 4)
    for bad in ((np.array([0, 1]), np.array([0, 2]), np.array([2, 2]), np.array([2, 2])),  # ranges overlap
                (np.array([0, 2]), np.array([0, 2]), np.array([2, 3]), np.array([2, 2])),  # past the rows
                (np.array([0, 2]), np.array([0, 3]), np.array([2, 2]), np.array([2, 2]))):  # past the pairs
        assert kernel.join(indptr, indices, values, labels, weights, qids, *bad) == (-1, -1)


def test_parallel_libsvm_ranges_match_the_streaming_reader(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranges parsed into one set of arrays and joined in place: gaps from weights, qid, comments and blank
    lines (colons and lines that hold no pair or row) close up exactly."""
    from common.data import parallel_read

    monkeypatch.setattr(parallel_read, "MIN_RANGE_BYTES", 64)  # many small ranges
    monkeypatch.setattr(parallel_read.os, "cpu_count", lambda: 5)
    rng = np.random.default_rng(11)
    texts = []
    for part in range(3):
        lines = []
        for _ in range(int(rng.integers(20, 80))):
            kind = rng.random()
            if kind < 0.05:
                lines.append(" \t" if kind < 0.02 else "")
                continue
            tokens = [f"{rng.integers(0, 3)}" + (":0.5" if rng.random() < 0.2 else "")]
            tokens += [f"qid:{rng.integers(0, 9)}"] if rng.random() < 0.2 else []
            tokens += [f"{rng.integers(0, 40)}:{rng.choice(['1', '-0.5', '1e2', 'nan', '3.25'])}"
                       for _ in range(int(rng.integers(0, 6)))]
            tokens += ["# a comment 3:4"] if rng.random() < 0.1 else []
            lines.append(("\t" if rng.random() < 0.1 else " ").join(tokens) + ("\r" if rng.random() < 0.1 else ""))
        texts.append("\n".join(lines) + ("\n" if part != 2 else ""))  # the last file without a final newline
        (tmp_path / f"{part}.libsvm").write_text(texts[-1])
    parsed = parallel_read.load_libsvm([tmp_path / f"{part}.libsvm" for part in range(3)])
    expected = LibsvmReader().parse("".join(t if t.endswith("\n") else t + "\n" for t in texts).encode())
    features = parsed["features"]
    assert features.shape == expected.features.shape
    np.testing.assert_array_equal(features.indptr, expected.features.indptr)
    np.testing.assert_array_equal(features.indices, expected.features.indices)
    np.testing.assert_array_equal(features.data, expected.features.data)
    np.testing.assert_array_equal(parsed["labels"], expected.labels[:, 0])
    np.testing.assert_array_equal(parsed["weights"], expected.weights)
    np.testing.assert_array_equal(parsed["qid"], expected.qid)
    assert sum(rows for _, rows in parsed["rows_per_file"]) == features.shape[0]
