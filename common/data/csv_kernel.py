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
from numba.extending import intrinsic

from common.data.jit import numba

OK, BAD_VALUE, BAD_WIDTH, FULL = 0, 1, 2, 3

_POW10 = np.array([10.0**i for i in range(23)])
_COMMA, _NL, _CR, _SP, _TAB = 44, 10, 13, 32, 9
_LOW_SEVEN, _ONES = np.uint64(0x7F7F7F7F7F7F7F7F), np.uint64(0x0101010101010101)


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
def _zero_bytes(word):
    """1 in each byte of word that is zero, 0 in the others: exact per byte (no carry crosses a byte)."""
    return ~(((word & _LOW_SEVEN) + _LOW_SEVEN) | word | _LOW_SEVEN) >> np.uint64(7)


@numba.njit(cache=True, nogil=True)
def count_bytes(buf, first, second):
    """(bytes equal to `first`, bytes equal to `second`) in buf, eight at a time: 2.5x the byte loop.
    Per block of 16 words each byte lane counts at most 16, so the lanes' sum (at most 128) fits a byte."""
    end = len(buf)
    pattern_a, pattern_b = _ONES * np.uint64(first), _ONES * np.uint64(second)
    count_a, count_b, i = 0, 0, 0
    while i + 128 <= end:
        lanes_a, lanes_b = np.uint64(0), np.uint64(0)
        for k in range(16):
            word = _load8(buf, i + 8 * k)  # i + 8 * k + 8 <= i + 128 <= end
            lanes_a += _zero_bytes(word ^ pattern_a)
            lanes_b += _zero_bytes(word ^ pattern_b)
        count_a += np.int64((lanes_a * _ONES) >> np.uint64(56))
        count_b += np.int64((lanes_b * _ONES) >> np.uint64(56))
        i += 128
    while i < end:
        count_a += buf[i] == first
        count_b += buf[i] == second
        i += 1
    return count_a, count_b


@numba.njit(cache=True, nogil=True, inline="always")
def _parse_plain(buf, i, end, pow10):
    """The common case, 3-4x faster than the general path: [-]digits[.digits] with at most 18 digits and no
    exponent, so the digits fit an int64 and one division by an exact power of ten rounds once. Gives the
    same value as the general path; ok False sends everything else there. Returns (value, next, ok).

    A plain loop per digit: 1.7-2.2x faster here than the eight-bytes-at-a-time (SWAR) digits it replaced,
    on short and long decimals and on 784 columns of small integers alike (bench/bench_xgboost.py)."""
    start = i
    negative = i < end and buf[i] == 45
    if negative:
        i += 1
    mantissa = np.int64(0)  # wraps past 18 digits, which are sent to the general path anyway
    digits = 0
    while i < end:
        digit = np.int64(buf[i]) - 48
        if digit < 0 or digit > 9:
            break
        mantissa = mantissa * 10 + digit
        digits += 1
        i += 1
    decimals = 0
    if i < end and buf[i] == 46:
        i += 1
        while i < end:
            digit = np.int64(buf[i]) - 48
            if digit < 0 or digit > 9:
                break
            mantissa = mantissa * 10 + digit
            decimals += 1
            i += 1
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
