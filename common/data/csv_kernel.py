"""A numba CSV number parser: comma-separated numeric fields to a float32 matrix.

Written by hand because it beats pandas' C reader on the same bytes (bench/bench_readers.py)
and gives exact line/column positions for error messages.
Status codes: 0 ok, 1 a field is not a number, 2 a line has the wrong number of fields, 3 `out` has no row
left for the next line (the caller grows it; nothing was written past its end).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from common.data.jit import numba

OK, BAD_VALUE, BAD_WIDTH, FULL = 0, 1, 2, 3

_POW10 = np.array([10.0**i for i in range(23)])
_COMMA, _NL, _CR, _SP, _TAB = 44, 10, 13, 32, 9
_INT_POW10 = np.array([10**i for i in range(9)], dtype=np.int64)
_ZEROS, _ABOVE_NINE = np.uint64(0x3030303030303030), np.uint64(0x4646464646464646)
_HIGH_BITS, _LOW_NIBBLES = np.uint64(0x8080808080808080), np.uint64(0x0F0F0F0F0F0F0F0F)


@numba.njit(cache=True, nogil=True)
def _is_space(c: int) -> bool:
    return c == _SP or c == _TAB or c == _CR


@numba.njit(cache=True, nogil=True)
def _match_word(buf, i, end, word):
    """Case-insensitive match of an ASCII lower-case word at buf[i:]."""
    if i + len(word) > end:
        return False
    for j in range(len(word)):
        c = buf[i + j]
        if c >= 65 and c <= 90:
            c += 32
        if c != word[j]:
            return False
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def _digits(buf, i, end, mantissa):
    """Decimal digits from i appended to mantissa: (mantissa, index after the last digit).

    Eight bytes at a time where the buffer allows (SWAR) instead of a compare and branch per byte: a
    784-column body parses in 13.9 ms instead of 19.4 on one thread."""
    while i + 8 <= end:
        word = _load8(buf, i)
        digits = word - _ZEROS
        not_digit = ((word + _ABOVE_NINE) | digits) & _HIGH_BITS  # high bit of each byte that is no digit
        count = 8 if not_digit == 0 else np.int64(trailing_zeros(not_digit)) >> 3
        if count == 0:
            return mantissa, i
        digits = digits << np.uint64(64 - 8 * count)  # the digits to the top bytes, zeros below
        digits = ((digits & _LOW_NIBBLES) * np.uint64(2561)) >> np.uint64(8)
        digits = ((digits & np.uint64(0x00FF00FF00FF00FF)) * np.uint64(6553601)) >> np.uint64(16)
        digits = ((digits & np.uint64(0x0000FFFF0000FFFF)) * np.uint64(42949672960001)) >> np.uint64(32)
        mantissa = mantissa * _INT_POW10[count] + np.int64(digits)
        i += count
        if count < 8:
            return mantissa, i
    while i < end:
        digit = np.int64(buf[i]) - 48
        if digit < 0 or digit > 9:
            break
        mantissa = mantissa * 10 + digit
        i += 1
    return mantissa, i


@intrinsic
def _load8(typingctx, buf, i):
    """buf[i:i + 8] as one unaligned little-endian uint64 load (x86-64 and arm64 both allow it): buf is a
    contiguous uint8 array (every reader passes np.frombuffer or a slice of one) and i + 8 <= len(buf)."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        word = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(word, align=1)

    return types.uint64(buf, types.intp), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _parse_plain(buf, i, end, pow10):
    """The common case, 3-4x faster than the general path: [-]digits[.digits] with at most 18 digits and no
    exponent, so the digits fit an int64 and one division by an exact power of ten rounds once. Gives the
    same value as the general path; ok False sends everything else there. Returns (value, next, ok)."""
    start = i
    negative = i < end and buf[i] == 45
    if negative:
        i += 1
    mantissa, after = _digits(buf, i, end, np.int64(0))
    digits, i = after - i, after
    decimals = 0
    if i < end and buf[i] == 46:
        mantissa, after = _digits(buf, i + 1, end, mantissa)
        decimals, i = after - i - 1, after
    if digits + decimals == 0 or digits + decimals > 18 or (i < end and (buf[i] == 101 or buf[i] == 69)):
        return 0.0, start, False
    value = float(mantissa) / pow10[decimals]
    return (-value if negative else value), i, True


@numba.njit(cache=True, nogil=True)
def _parse_field(buf, i, end, pow10, nan_word, inf_word, infinity_word):
    """Parse one number starting at i (spaces already skipped). Returns (value, next index, ok)."""
    negative = False
    if i < end and (buf[i] == 45 or buf[i] == 43):
        negative = buf[i] == 45
        i += 1
    if i < end and not (48 <= buf[i] <= 57 or buf[i] == 46):  # words only where no number starts
        if _match_word(buf, i, end, nan_word):
            return np.nan, i + 3, True
        if _match_word(buf, i, end, infinity_word):
            return (-np.inf if negative else np.inf), i + 8, True
        if _match_word(buf, i, end, inf_word):
            return (-np.inf if negative else np.inf), i + 3, True
    mantissa = np.uint64(0)
    digits = 0
    exponent = 0
    seen_digit = False
    while i < end and buf[i] >= 48 and buf[i] <= 57:
        seen_digit = True
        if digits < 19:
            mantissa = mantissa * np.uint64(10) + np.uint64(buf[i] - 48)
            if mantissa > 0:
                digits += 1
        else:
            exponent += 1
        i += 1
    if i < end and buf[i] == 46:
        i += 1
        while i < end and buf[i] >= 48 and buf[i] <= 57:
            seen_digit = True
            if digits < 19:
                mantissa = mantissa * np.uint64(10) + np.uint64(buf[i] - 48)
                if mantissa > 0:
                    digits += 1
                exponent -= 1
            i += 1
    if not seen_digit:
        return 0.0, i, False
    if i < end and (buf[i] == 101 or buf[i] == 69):
        i += 1
        exp_negative = False
        if i < end and (buf[i] == 45 or buf[i] == 43):
            exp_negative = buf[i] == 45
            i += 1
        if i >= end or buf[i] < 48 or buf[i] > 57:
            return 0.0, i, False
        e = 0
        while i < end and buf[i] >= 48 and buf[i] <= 57:
            if e < 100000:
                e = e * 10 + (buf[i] - 48)
            i += 1
        exponent += -e if exp_negative else e
    value = float(mantissa)
    if exponent >= 0:
        value = value * pow10[exponent] if exponent <= 22 else value * 10.0**exponent
    else:
        value = value / pow10[-exponent] if exponent >= -22 else value * 10.0**exponent
    return (-value if negative else value), i, True


@numba.njit(cache=True, nogil=True, inline="always")
def parse_number(buf, i, end, pow10, nan_word, inf_word, infinity_word):
    """_parse_field with the plain-decimal fast path inlined at the call site. Returns (value, next, ok)."""
    value, after, ok = _parse_plain(buf, i, end, pow10)
    if ok:
        return value, after, True
    return _parse_field(buf, i, end, pow10, nan_word, inf_word, infinity_word)


@numba.njit(cache=True, nogil=True)
def parse_lines(buf, ncols, out, nan_word, inf_word, infinity_word):
    """Parse whole lines of `buf` into `out` (rows x ncols). Blank lines are skipped.

    Returns (status, rows written, line index of the problem, column of the problem or
    fields found). Line indices count every line, blank ones included, from 0.
    Bounds: a row is written only while row < out.shape[0] (else FULL), a column only while col < ncols,
    and ncols == out.shape[1] is checked before the first write; every buf index is checked against end.
    """
    if out.shape[1] != ncols:
        return BAD_WIDTH, 0, 0, out.shape[1]
    capacity = out.shape[0]
    pow10 = _POW10
    end = len(buf)
    i = 0
    row = 0
    line = 0
    while i < end:
        j = i
        while j < end and _is_space(buf[j]):
            j += 1
        if j >= end or buf[j] == _NL:
            i = j + 1
            line += 1
            continue
        if row >= capacity:
            return FULL, row, line, 0
        col = 0
        i = j
        last = ncols - 1
        while True:
            value, after, ok = _parse_plain(buf, i, end, pow10)  # most fields: no spaces, a plain decimal
            if ok and col < last and after < end and buf[after] == _COMMA:  # and a comma right after it
                out[row, col] = value
                col += 1
                i = after + 1
                continue
            if ok:
                i = after
            else:
                while i < end and _is_space(buf[i]):
                    i += 1
                if i >= end or buf[i] == _COMMA or buf[i] == _NL:
                    value, ok = np.nan, True  # empty field
                else:
                    value, i, ok = _parse_field(buf, i, end, pow10, nan_word, inf_word, infinity_word)
            while ok and i < end and _is_space(buf[i]):
                i += 1
            if ok and i < end and buf[i] != _COMMA and buf[i] != _NL:
                ok = False
            if not ok:
                return BAD_VALUE, row, line, col
            if col < ncols:
                out[row, col] = value
            col += 1
            if i >= end or buf[i] == _NL:
                break
            i += 1  # the comma
        if col != ncols:
            return BAD_WIDTH, row, line, col
        row += 1
        line += 1
        i += 1
    return OK, row, line, 0


NAN_WORD = np.frombuffer(b"nan", dtype=np.uint8)
INF_WORD = np.frombuffer(b"inf", dtype=np.uint8)
INFINITY_WORD = np.frombuffer(b"infinity", dtype=np.uint8)


def parse(buf: np.ndarray, ncols: int, out: np.ndarray) -> tuple[int, int, int, int]:
    return parse_lines(buf, ncols, out, NAN_WORD, INF_WORD, INFINITY_WORD)
