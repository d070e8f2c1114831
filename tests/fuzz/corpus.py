"""Known bad request bodies, from a hostile review: what each reader must make of them.

Each entry is (reader kind, body, expected), expected being `Rows(n, width)` (a batch of that shape) or
`REFUSED` (a UserError) or `ROWS_OR_REFUSED` (either: the body is odd but readable). The fuzz suite mixes them
into its bodies; tests/unit/test_malformed_corpus.py checks each one in the default test run.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from common.data.recordio_writer import _varint

MAGIC = 0xCED7230A


class Rows(NamedTuple):
    n: int
    width: int


REFUSED = "refused"
ROWS_OR_REFUSED = "rows or refused"


def _header(length: int, cflag: int = 0) -> bytes:
    return struct.pack("<II", MAGIC, cflag << 29 | length)




def _field(number: int, body: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _sparse_record(keys: list[int], values: list[float], shape: list[int]) -> bytes:
    tensor = (_field(1, struct.pack(f"<{len(values)}f", *values)) + _field(2, b"".join(map(_varint, keys)))
              + _field(3, b"".join(map(_varint, shape))))
    payload = _field(1, _field(1, b"values") + _field(2, _field(2, tensor)))
    return _header(len(payload)) + payload + b"\0" * (-len(payload) % 4)


def _dense_record(values: list[float], shape: list[int]) -> bytes:
    tensor = _field(1, struct.pack(f"<{len(values)}f", *values)) + _field(3, b"".join(map(_varint, shape)))
    payload = _field(1, _field(1, b"values") + _field(2, _field(2, tensor)))
    return _header(len(payload)) + payload + b"\0" * (-len(payload) % 4)


ONE_ROW = _dense_record([1.0, 2.0], [2])

KNOWN_BAD: list[tuple[str, bytes, object]] = [
    # CSV: all-empty rows once overflowed the kernel's output (3 rows for 4; "double free" at 10,000 rows)
    ("csv", b",,,\n" * 4, Rows(4, 4)),
    ("csv", b",,,\n" * 2000, Rows(2000, 4)),
    ("csv", b",,,\n" * 10000, Rows(10000, 4)),
    ("csv", b",\n" * 5000 + b",", Rows(5001, 2)),
    ("csv", b"inf,1e400,-inf,-1e400\n", Rows(1, 4)),
    ("csv", b"1,2\n\xff\xfe,3\n", REFUSED),
    ("csv", b"\xc3\xa9,1\n", REFUSED),
    ("csv", b"1,2\n1,2,3\n", REFUSED),
    ("csv", b"1" * 5000 + b",1\n", Rows(1, 2)),
    # JSON: Python's json module raises RecursionError, OverflowError and ValueError on these
    ("json", b"[" * 100_000 + b"]" * 100_000, REFUSED),
    ("json", b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", REFUSED),
    ("json", b"[1" + b"0" * 309 + b"]", ROWS_OR_REFUSED),
    ("json", b"[-1" + b"0" * 400 + b", 1]", ROWS_OR_REFUSED),
    ("json", b"[" + b"1" * 5000 + b"]", ROWS_OR_REFUSED),
    ("json", b"[1e400, -1e400, NaN, Infinity]", Rows(1, 4)),
    ("json", b'{"instances": [[1, 2]]}\xff', REFUSED),
    ("json", b'[\xff]', REFUSED),
    ("json", b'{"data": {"features": {"keys": [0], "shape": [4294967296, 4294967296], "values": [1]}}}', REFUSED),
    ("json", b'{"data": {"features": {"keys": [0], "shape": [9223372036854775808], "values": [1]}}}', REFUSED),
    ("jsonlines", b"[1" + b"0" * 309 + b"]\n", ROWS_OR_REFUSED),
    ("jsonlines", b"[" + b"1" * 5000 + b"]\n", ROWS_OR_REFUSED),
    ("jsonlines", b"[" * 100_000 + b"\n", REFUSED),
    ("jsonlines", b"[1, 2]\n\xff\n", REFUSED),
    # RecordIO: bad magic, lengths past the end, continuation flags out of order, huge declared shapes
    ("recordio", b"\0" * 16, REFUSED),
    ("recordio", _header(100) + b"\0" * 10, REFUSED),
    ("recordio", _header((1 << 29) - 1) + b"\0" * 4, REFUSED),
    ("recordio", _header(4, cflag=2) + b"\0" * 4, REFUSED),
    ("recordio", _header(4, cflag=1) + b"\0" * 4, REFUSED),
    ("recordio", ONE_ROW[:-3], REFUSED),
    ("recordio", _sparse_record([0], [1.0], [1 << 40]), REFUSED),
    ("recordio", _sparse_record([0], [1.0], [(1 << 64) - 1]), REFUSED),
    ("recordio", _sparse_record([1 << 40], [1.0], [4]), REFUSED),
    ("recordio", _dense_record([1.0, 2.0], [1 << 62]), REFUSED),
    ("recordio", ONE_ROW * 3, Rows(3, 2)),
    # libsvm: indices past int32, qids that are not integers
    ("libsvm", b"1 99999999999999999999:1\n", REFUSED),
    ("libsvm", b"1 2147483648:1\n", REFUSED),
    ("libsvm", b"1 4294967296:1\n", REFUSED),
    ("libsvm", b"1 qid:nan 1:1\n", REFUSED),
    ("libsvm", b"1 qid:inf 1:1\n", REFUSED),
    ("libsvm", b"1 qid:1e300 1:1\n", REFUSED),
    ("libsvm", b"1 1:1\n\xff 2:1\n", REFUSED),
    ("libsvm", b"1 0:inf 1:1e400\n", Rows(1, 2)),
    # found by `make fuzz`: a line of whitespace the kernel does not skip (vertical tab, form feed)
    ("csv", b"\x0c\nnan,nan,nan", REFUSED),
    ("libsvm", b"4\n\x0b", REFUSED),
    ("libsvm", b"1 1:1\n\x0c\n", REFUSED),
]

# Bodies that still fail, and where the fix belongs: the regression tests mark them xfail(strict=True).
STILL_FAILING: dict[bytes, str] = {}
