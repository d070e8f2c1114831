"""Small CSV blocks parsed by numpy's C reader (np.loadtxt) instead of the kernel (csv_kernel.py), so that a job
whose only parsing is a few MB of CSV never imports numba (0.11 s) nor loads the kernel (0.03 s). The kernel
parses 3x faster, so past BUDGET_BYTES per training job, or once numba is imported anyway, it takes every
block (bench/bench_readers.py measures both). A built-in model's server uses the kernel, which it loads before
its first request; a server of the user's inference module gets a training job's budget (script_mode/module.py).

A block is taken only where both readers give the same float32 bits: its bytes are digits, signs, '.', ',',
spaces, tabs, newlines and the letters of nan, inf and infinity (no exponent, no CR), and no field is longer
than 23 bytes. np.loadtxt rounds each number correctly to float64, then casts it to float32. The kernel takes
at most 19 digits as an exact integer mantissa, rounds it to float64, then multiplies or divides once by an
exact power of ten (at most 10^22, which 23 bytes bound: 22 decimals and the point). Fields of at most 15 bytes
have at most 15 digits, and the kernel's float64 is then the correctly rounded one. Longer fields (Python's str
of a float64 has up to 17 significant digits, which is what the SDK's CSVSerializer and pandas' to_csv write)
leave the kernel's float64 within 2 units in the last place of the correct one. Such a block is taken only if
every value rounds to the same float32 anywhere within 4 units of it: all but numbers next to a float32
rounding boundary
(tests/unit/test_csv_numpy.py compares the bits on generated blocks). Anything else, and anything np.loadtxt
refuses (an empty field, a line of blanks, a change of width), returns None: the kernel parses the block and
words any error.
"""

from __future__ import annotations

import io
import sys
import warnings

import numpy as np

BUDGET_BYTES = 16 << 20
_ACCEPTED = b"0123456789+-., \t\nnaNAifIFtyTY"
_EXACT_FIELD = 15  # bytes: at most 15 digits, which both readers round to the same float64
_LONGEST_FIELD = 23  # bytes: the kernel's power of ten stays exact (10^22 at most); Python's str of a float64
# without an exponent is at most 23 bytes (-0.00012345678901234567)
_KERNEL_ULPS = 4  # how far (float64 units in the last place) the kernel's value may be checked to stray
_COMMA, _NEWLINE = 44, 10
_budget = 0  # bytes parse() may still be offered: none but in a training job, which grant()s BUDGET_BYTES


def grant(nbytes: int = BUDGET_BYTES) -> None:
    """Let this process's next `nbytes` of CSV go to numpy. Training does (common/training.py), and a server of
    the user's inference module; a built-in model's server does not: its requests keep the kernel it warmed at
    start."""
    global _budget
    _budget = nbytes


def takes(nbytes: int) -> bool:
    """Whether parse() should try a block of `nbytes`: numba is not imported yet and the budget holds it."""
    return "numba" not in sys.modules and nbytes <= _budget


def parse(block: bytes | memoryview, ncols: int) -> tuple[np.ndarray, int] | None:
    """Whole lines of CSV to (a float32 (rows, ncols) matrix, blank lines skipped; the lines read); None: leave
    the block to the kernel."""
    global _budget
    data = bytes(block)
    _budget -= len(data)
    if data.translate(None, _ACCEPTED):
        return None
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero((buf == _COMMA) | (buf == _NEWLINE))  # of each field
    widths = np.diff(ends, prepend=-1, append=len(buf))  # a field and the byte that ends it
    longest = int(widths.max()) - 1  # the byte that ends a field is not part of it
    if longest > _LONGEST_FIELD:
        return None
    # An empty field (a missing value): np.loadtxt refuses it, but only once it gets there. Nothing between two
    # ends is an empty line (skipped) unless a comma is one of them.
    bounds = np.concatenate(([_NEWLINE], buf[ends], [_NEWLINE]))
    empty = np.flatnonzero(widths == 1)
    if len(empty) and ((bounds[empty] == _COMMA) | (bounds[empty + 1] == _COMMA)).any():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a block of blank lines: "input contained no data", and no rows
            exact = np.loadtxt(io.BytesIO(data), delimiter=",", comments=None, dtype=np.float64, ndmin=2,
                               encoding="latin-1")
    except ValueError:
        return None
    if exact.shape[1] != ncols:
        return None
    if longest > _EXACT_FIELD and not _same_float32_nearby(exact):
        return None
    matrix = exact.astype(np.float32)
    lines = int(np.count_nonzero(bounds[1:-1] == _NEWLINE)) + (1 if data and data[-1] != _NEWLINE else 0)
    return matrix, lines  # lines as the kernel counts them: each newline, and anything after the last one


def _same_float32_nearby(exact: np.ndarray) -> bool:
    """Whether every value rounds to the same float32 anywhere within _KERNEL_ULPS of it (nan and inf do)."""
    with np.errstate(invalid="ignore", over="ignore"):
        reach = _KERNEL_ULPS * np.spacing(np.abs(exact))
        low, high = (exact - reach).astype(np.float32), (exact + reach).astype(np.float32)
    finite = np.isfinite(exact)
    return bool(np.array_equal(low[finite], high[finite]))
