"""Every response encoder in common/data/registry.py on hypothesis-made columns: NaN, inf, huge and tiny values,
empty columns and vectors, integer and boolean dtypes, odd column names.

Each output must be valid for its format and hold the columns: strict JSON (no NaN tokens; non-finite
values are null), one JSON Lines line per row, CSV with one line per row and one field per value (readable by
CsvReader), RecordIO frames that common/data/recordio_reader.py scans and tests/responses.py decodes. A column of
strings is refused with ValueError, never encoded wrongly.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from common.data import registry as encoders
from common.data.columns import ResponseLayout
from common.data.csv_reader import CsvReader
from common.data.recordio_reader import _frames
from common.tabular.model import JUMPSTART_LAYOUT
from tests.responses import decode_label_records

DTYPES = [np.float32, np.float64, np.int64, np.int32, np.bool_]
NAMES = st.one_of(st.sampled_from(["score", "predicted_label", "closest_cluster", "a", "é", "x y", '"q"', ""]),
                  st.text(max_size=12))


@st.composite
def columns(draw: st.DrawFn, finite: bool = False) -> dict[str, np.ndarray]:
    n = draw(st.integers(0, 12))
    names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    out = {}
    for name in names:
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        shape = (n,) if draw(st.booleans()) else (n, draw(st.integers(0, 4)))
        if dtype.kind == "f":
            elements = st.floats(width=dtype.itemsize * 8, allow_nan=not finite, allow_infinity=not finite)
        else:
            elements = None
        out[name] = draw(hnp.arrays(dtype, shape, elements=elements))
    return out


def _no_constants(token: str) -> None:
    raise AssertionError(f"the JSON holds {token}, which is not JSON")


def _expected(column: np.ndarray, row: int) -> object:
    value = np.asarray(column[row], np.float64)
    if value.ndim == 0:
        return float(value) if math.isfinite(value) else None
    return [float(v) if math.isfinite(v) else None for v in value.tolist()]


def _check_records(records: list, cols: dict[str, np.ndarray]) -> None:
    n = len(next(iter(cols.values())))
    assert len(records) == n
    for row, record in enumerate(records):
        assert list(record) == list(cols)
        for name, column in cols.items():
            assert record[name] == _expected(column, row), (name, row, record[name])


@given(columns())
def test_json(cols: dict[str, np.ndarray]) -> None:
    out = encoders.encode(cols, "application/json", ResponseLayout(envelope="predictions"))
    document = json.loads(out.decode("utf-8"), parse_constant=_no_constants)
    assert list(document) == ["predictions"]
    _check_records(document["predictions"], cols)


@given(columns())
def test_jsonlines(cols: dict[str, np.ndarray]) -> None:
    out = encoders.encode(cols, "application/jsonlines")
    text = out.decode("utf-8")
    assert text == "" or text.endswith("\n")
    records = [json.loads(line, parse_constant=_no_constants) for line in text.splitlines()]
    _check_records(records, cols)


@given(columns())
def test_csv(cols: dict[str, np.ndarray]) -> None:
    n = len(next(iter(cols.values())))
    try:
        out = encoders.encode(cols, "text/csv")
    except ValueError:
        # no rows: `reshape(0, -1)` cannot tell the width; invoke never encodes zero rows
        assert n == 0
        return
    width = sum(1 if c.ndim == 1 else c.shape[1] for c in cols.values())
    if n == 0:
        assert out == b""
        return
    lines = out.decode("ascii").split("\n")
    assert lines[-1] == "" and len(lines) == n + 1
    expected = np.hstack([np.asarray(c, np.float64).reshape(n, -1) for c in cols.values()])
    for line, row in zip(lines, expected):
        fields = line.split(",") if width else [""]
        assert len(fields) == max(width, 1) or width == 0
        for field, value in zip(fields, row):
            assert (float(field) == value) if math.isfinite(value) else field == "", (field, value)
    if width and all(lines[:-1]):  # a row of one non-finite value is an empty line, which CSV readers skip
        parsed = CsvReader().parse(out).features
        assert parsed.shape == (n, width)
        with np.errstate(over="ignore"):
            want = np.where(np.isfinite(expected), expected, np.nan).astype(np.float32)
        # the CSV kernel's decimal conversion may differ by one float32 step where float64 rounds to a tie
        assert np.allclose(parsed, want, rtol=2.0 ** -23, atol=0, equal_nan=True)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # float64 past float32: inf
@given(columns())
def test_recordio(cols: dict[str, np.ndarray]) -> None:
    out = encoders.encode(cols, "application/x-recordio-protobuf")
    n = len(next(iter(cols.values())))
    frames = _frames(np.frombuffer(out, np.uint8), True, n + 1, 0, "response")
    assert frames.starts.size == n and frames.consumed == len(out)
    if any(c.ndim == 2 and c.shape[1] == 0 for c in cols.values()):
        return  # an empty vector is an empty tensor, which tests/responses.py does not decode
    rows = decode_label_records(out)
    assert len(rows) == n
    for i, row in enumerate(rows):
        assert list(row) == list(cols)
        for name, column in cols.items():
            with np.errstate(over="ignore"):
                want = np.asarray(column[i], np.float32).reshape(-1)
            assert np.array_equal(np.asarray(row[name], np.float32), want, equal_nan=True), (name, i)


@pytest.mark.parametrize("accept", sorted(encoders.WRITERS))
@given(st.lists(st.text(max_size=5), min_size=1, max_size=5))
def test_string_columns_are_refused_or_encoded(accept: str, labels: list[str]) -> None:
    cols = {"predicted_label": np.asarray(labels)}
    try:
        out = encoders.encode(cols, accept)
    except ValueError:
        return
    numbers = [float(v) for v in labels]  # only strings that are numbers may be encoded
    assert len(numbers) == len(labels) and out


@pytest.mark.parametrize("jsonlines", [False, True])
@given(columns(finite=True))
def test_tabular_response_body(jsonlines: bool, cols: dict[str, np.ndarray]) -> None:
    out = encoders.encode(cols, "application/jsonlines" if jsonlines else "application/json", JUMPSTART_LAYOUT)
    text = out.decode("utf-8")
    if not jsonlines:
        assert json.loads(text, parse_constant=_no_constants) == {k: v.tolist() for k, v in cols.items()}
        return
    records = [json.loads(line, parse_constant=_no_constants) for line in text.splitlines()]
    assert len(records) == len(next(iter(cols.values())))
