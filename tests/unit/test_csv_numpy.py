"""numpy's reader for a small job's CSV (common/data/csv_numpy.py) against the kernel it stands in for.

The property: whatever block numpy's path takes, the kernel parses too, to the same float32 bits (NaN to NaN)
and the same count of lines; everything else is left to the kernel. Blocks are generated field by field from
numbers, the words nan/inf/infinity in any case, padding and junk of the same alphabet, and as raw text.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from common.data import csv_kernel, csv_numpy
from common.data.csv_reader import CsvReader, count_columns
from tests.conftest import REPO
from tools.local import entrypoint_env, write_job

ALPHABET = "0123456789+-., \t\nnaNAifIFtyTYeE\r"


def _kernel(block: bytes, ncols: int) -> tuple[int, np.ndarray, int]:
    out = np.empty((len(block) // ncols + 1, ncols), np.float32)
    status, rows, line, _ = csv_kernel.parse(np.frombuffer(block, np.uint8), ncols, out)
    return status, out[:rows], line


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    nan = np.isnan(a)
    return a.shape == b.shape and bool((nan == np.isnan(b)).all()) and bool(
        (a.view(np.uint32)[~nan] == b.view(np.uint32)[~nan]).all())


def _judge(block: bytes) -> str:
    ncols = count_columns(block)
    if ncols is None:
        return "blank"
    parsed = csv_numpy.parse(block, ncols)
    if parsed is None:
        return "left to the kernel"
    matrix, lines = parsed
    status, expected, kernel_lines = _kernel(block, ncols)
    assert status == csv_kernel.OK, (block, matrix)
    assert _same_bits(matrix, expected), (block, matrix, expected)
    assert lines == kernel_lines, block
    return "same"


def _number(draw: st.DrawFn, valid: bool) -> str:
    """Any run of digits, sign and point; when `valid`, a number of at most 13 bytes with a digit."""
    sign = draw(st.sampled_from(["", "", "-", "+"]))
    whole = draw(st.text("0123456789", min_size=int(valid), max_size=6 if valid else 9))
    point = draw(st.sampled_from(["", ".", "."]))
    fraction = draw(st.text("0123456789", max_size=6 if valid else 9)) if point else ""
    return sign + whole + point + fraction


@st.composite
def _field(draw: st.DrawFn, clean: bool, valid: bool) -> str:
    kinds = ["number", "number", "number", "word"] + ([] if clean else ["junk", "empty"])
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        text = _number(draw, valid)
    elif kind == "word":
        words = ["nan", "inf", "infinity"] + ([] if valid else ["in", "infinit", "nana"])
        word = draw(st.sampled_from(words))
        text = draw(st.sampled_from(["", "-", "+"])) + "".join(
            c.upper() if draw(st.booleans()) else c for c in word)
    elif kind == "junk":
        text = draw(st.text(ALPHABET.replace(",", "").replace("\n", ""), max_size=6))
    else:
        text = ""
    pad = st.sampled_from(["", "", " ", "\t"] + ([] if valid else ["  "]))
    return draw(pad) + text + draw(pad)


@st.composite
def _block(draw: st.DrawFn, clean: bool = False, valid: bool = False) -> bytes:
    """Rows of `width` fields among blank lines; unless `clean`, also junk, empty fields, lines of blanks and
    rows of another width; when `valid`, only numbers and words both readers take."""
    width = draw(st.integers(1, 5))
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        shapes = ["row", "row", "row", "blank"] + ([] if clean else ["spaces", "other width"])
        shape = draw(st.sampled_from(shapes))
        if shape == "blank":
            lines.append("")
        elif shape == "spaces":
            lines.append(draw(st.sampled_from([" ", "\t", "  "])))
        else:
            n = width if shape == "row" else draw(st.integers(1, 6))
            lines.append(",".join(draw(_field(clean, valid)) for _ in range(n)))
    end = draw(st.sampled_from(["\n", "\n", "", "\n\n"] + ([] if clean else ["\r\n"])))
    return ("\n".join(lines) + (end if lines else "")).encode()


@settings(max_examples=600, deadline=None)
@given(st.one_of(_block(clean=True, valid=True), _block(clean=True), _block(),
                 st.text(ALPHABET, max_size=200).map(str.encode)))
def test_what_numpy_takes_the_kernel_parses_to_the_same_bits(block: bytes) -> None:
    event(_judge(block))


@st.composite
def _long_number(draw: st.DrawFn) -> str:
    """Python's str of a float64 (as the SDK's CSVSerializer and pandas write them), a run of up to 22 digits
    around a point, or a float32 rounding boundary (halfway between two float32s) and its float64 neighbours."""
    kind = draw(st.sampled_from(["str", "str", "digits", "boundary"]))
    if kind == "str":
        value = draw(st.floats(-1e15, 1e15, allow_nan=False, allow_infinity=False, width=64))
        text = str(value)
        return text if "e" not in text else "0"
    if kind == "digits":
        whole = draw(st.text("0123456789", min_size=1, max_size=11))
        return draw(st.sampled_from(["", "-"])) + whole + "." + draw(st.text("0123456789", min_size=1, max_size=11))
    below = np.float32(draw(st.floats(0.0009765625, 1048576.0, width=32)))
    halfway = (np.float64(below) + np.float64(np.nextafter(below, np.float32(np.inf)))) / 2
    step = draw(st.integers(-3, 3))
    return repr(float(halfway + step * np.spacing(halfway)))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(_long_number(), min_size=3, max_size=3), min_size=1, max_size=6))
def test_long_numbers_numpy_takes_match_the_kernel_bit_for_bit(rows: list[list[str]]) -> None:
    block = "".join(",".join(row) + "\n" for row in rows).encode()
    event(_judge(block))


def test_float64_rows_written_as_the_sdk_does_go_to_numpy_and_match_the_kernel() -> None:
    rows = np.random.default_rng(3).normal(0, 3, (300, 5))
    block = "".join(",".join(map(str, row)) + "\n" for row in rows).encode()  # CSVSerializer's rows
    assert max(len(field) for field in block.replace(b"\n", b",").split(b",")) > 15
    assert _judge(block) == "same"


def test_short_numbers_go_to_numpy_and_match_the_kernel() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 3, (500, 6))
    text = io.StringIO()
    np.savetxt(text, rows, fmt="%.6f", delimiter=",")
    block = (text.getvalue() + "\nnan,-inf,Infinity,+1,.5,-0\n\n").encode()
    assert _judge(block) == "same"


@pytest.mark.parametrize("block", [
    b"1.0000000596046448,1\n",       # 1 + 2**-24, halfway between two float32s: the kernel's rounding decides
    b".00000000000000000000001,1\n",  # over 23 bytes: 10**-23, the kernel's power of ten, is not exact
    b"1e5,2\n",                      # an exponent
    b"1,2\r\n",                      # CR
    b"1,,2\n", b"1,2,\n", b",1\n",   # empty fields (missing values)
    b"1,2\n   \n3,4\n",              # a line of blanks
    b"1,2\n3\n",                     # another width
    b"1,x\n",                        # not a number
])
def test_numpy_leaves_to_the_kernel_what_it_might_read_differently(block: bytes) -> None:
    assert csv_numpy.parse(block, count_columns(block)) is None


def test_only_training_grants_numpy_a_budget_and_numba_takes_over_once_imported(monkeypatch) -> None:
    monkeypatch.setattr(csv_numpy, "_budget", 0)
    assert not csv_numpy.takes(10)  # a server: requests keep the kernel
    csv_numpy.grant(100)
    assert "numba" in sys.modules and not csv_numpy.takes(10)  # this test process imported the kernel
    monkeypatch.delitem(sys.modules, "numba")
    assert csv_numpy.takes(100) and not csv_numpy.takes(101)


def test_the_reader_gives_the_same_batches_either_way(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    text = io.StringIO()
    np.savetxt(text, np.column_stack([rng.integers(0, 2, 3000), rng.normal(size=(3000, 5))]), fmt="%.5f",
               delimiter=",")
    body = text.getvalue().encode()
    kernel = list(CsvReader(1, chunk_bytes=1 << 14).batches(io.BytesIO(body), "train.csv", 1000))
    monkeypatch.setattr(csv_numpy, "_budget", 1 << 30)
    monkeypatch.delitem(sys.modules, "numba")  # as in a small job: numba not imported yet
    offered = []
    monkeypatch.setattr(csv_numpy, "parse", lambda block, ncols, parse=csv_numpy.parse: offered.append(1) or
                        parse(block, ncols))
    numpy = list(CsvReader(1, chunk_bytes=1 << 14).batches(io.BytesIO(body), "train.csv", 1000))
    assert offered and [(b.first_row, len(b)) for b in numpy] == [(b.first_row, len(b)) for b in kernel]
    for a, b in zip(numpy, kernel):
        assert _same_bits(a.features, b.features) and _same_bits(a.labels, b.labels)


@pytest.mark.parametrize("written", ["%.4f", "str"])  # str: Python's shortest repr, as pandas and the SDK write
def test_a_small_xgboost_csv_job_trains_without_importing_numba(tmp_path: Path, written: str) -> None:
    rng = np.random.default_rng(2)
    data = tmp_path / "train.csv"
    table = np.column_stack([rng.integers(0, 2, 2000), rng.normal(size=(2000, 4))])
    if written == "str":
        data.write_text("".join(",".join(map(str, row)) + "\n" for row in table))
    else:
        np.savetxt(data, table, fmt=written, delimiter=",")
    write_job(tmp_path, {"num_round": "3", "objective": "binary:logistic"}, {"train": ([data], "text/csv")})
    code = ("import json, runpy, sys\ntry:\n    runpy.run_module('common.entrypoint', run_name='__main__')\n"
            "except SystemExit as stop:\n    code = stop.code\n"
            "print(json.dumps([code, 'numba' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code, "train"], cwd=REPO, env=entrypoint_env("xgboost", tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, False], done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "model" / "xgboost-model").exists()
