"""Malformed request bodies for every content type: valid bodies of the right width, then mutated.

Every generator takes a `random.Random`: the server fuzz seeds one per image and content type, and the
hypothesis tests pass `st.randoms()`, so hypothesis drives (and shrinks) the same mutations.
Mutations are structure-aware (a CSV field blanked, a JSON number made 5,000 digits long, a RecordIO length
word changed, a libsvm index made 2^31) and byte-level (flips, inserts, cuts, splices).
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable

import numpy as np

from common.data import recordio_writer as recordio
from tests.fuzz.corpus import KNOWN_BAD

MAGIC = 0xCED7230A
Rng = random.Random

# Text that readers have to refuse or read as a number, spliced in where a number was.
ODD_NUMBERS = [
    b"nan", b"NaN", b"-nan", b"inf", b"-inf", b"+inf", b"Infinity", b"-Infinity", b"infinity", b"1e400", b"-1e400",
    b"1e-400", b"1e309", b"4e38", b"-3.5e38", b"1e39", b"99999999999999999999", b"1" * 400, b"0." + b"0" * 400 + b"1",
    b"0x10", b"1_000", b"+", b"-", b".", b"e5", b"1e", b"1e+", b"1e-", b"--1", b"+-1", b"1..2", b"1.2.3", b"1e5e5",
    b"\xff", b"\x00", b"\xc3\xa9", b"\xe2\x80\xa8", b"\xef\xbb\xbf1", b" ", b"\t", b"\r", b"\x0b", b"\x0c", b"",
    b"true", b"null", b'"1"', b"'1'", b"-0", b"4294967296", b"2147483648", b"2147483647", b"-2147483649",
    b"9223372036854775808", b"18446744073709551616", b"1e18446744073709551616", b"1" * 30 + b"e-30", b"0e99999",
    b"1,", b",1", b"1:2", b"[1]", b"{}", b"#", b"1 2", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
]
SEPARATORS = [b",", b",,", b"\n", b"\n\n", b"\r\n", b"\r", b" ", b"\t", b":", b";", b"|", b"\x00", b"\x0b", b"\x0c"]
MAX_BODY = 1 << 18  # mutants stay below 256 KiB; the corpus holds the few bigger ones


def number(rng: Rng, integer: bool = False) -> bytes:
    if integer:
        return str(rng.randrange(4)).encode()
    pick = rng.random()
    if pick < 0.4:
        return repr(round(rng.gauss(0, 2), rng.randrange(1, 8))).encode()
    if pick < 0.6:
        return str(rng.randrange(-5, 10)).encode()
    if pick < 0.8:
        return repr(rng.gauss(0, 1)).encode()
    if pick < 0.95:
        return f"{rng.gauss(0, 1):.3e}".encode()
    return rng.choice(ODD_NUMBERS)


def _rows(rng: Rng, width: int, ints: tuple[int, ...], odd: float = 0.0) -> list[list[bytes]]:
    n = rng.choice([1, 1, 1, 2, 3, 5, 10, 50]) if rng.random() < 0.97 else rng.choice([500, 2000])
    return [[rng.choice(ODD_NUMBERS) if rng.random() < odd else number(rng, c in ints) for c in range(width)]
            for _ in range(n)]


# ---- CSV -----------------------------------------------------------------------------------------------------
def csv_valid(rng: Rng, width: int, ints: tuple[int, ...] = ()) -> bytes:
    rows = _rows(rng, width, ints)
    text = b"\n".join(b",".join(row) for row in rows)
    return text + (b"\n" if rng.random() < 0.7 else b"")


def csv_mutant(rng: Rng, width: int, ints: tuple[int, ...] = ()) -> bytes:
    rows = _rows(rng, width, ints, odd=rng.choice([0.0, 0.0, 0.05, 0.5]))
    for _ in range(rng.randrange(1, 5)):
        row = rng.choice(rows)
        kind = rng.randrange(12)
        col = rng.randrange(len(row)) if row else 0
        if kind == 0 and row:  # a field blanked
            row[col] = b""
        elif kind == 1 and row:  # a field replaced by odd text
            row[col] = rng.choice(ODD_NUMBERS)
        elif kind == 2 and row:  # digits replaced
            row[col] = bytes(rng.choice(b"0123456789.-eE+") for _ in range(rng.randrange(1, 40)))
        elif kind == 3 and row:  # a separator duplicated inside a field
            row[col] = row[col] + rng.choice(SEPARATORS) + number(rng)
        elif kind == 4:  # a field added or removed
            if row and rng.random() < 0.5:
                del row[col]
            else:
                row.insert(col, number(rng))
        elif kind == 5 and row:  # the line truncated
            text = b",".join(row)
            cut = rng.randrange(len(text) + 1)
            row[:] = text[:cut].split(b",")
        elif kind == 6:  # blank and whitespace-only lines
            rows.insert(rng.randrange(len(rows) + 1), [rng.choice([b"", b" ", b"\t", b"\r", b" \t\r", b"\x0c"])])
        elif kind == 7:  # a header row
            rows.insert(0, [f"f{i}".encode() for i in range(width)])
        elif kind == 8 and row:  # quotes and spaces around fields
            row[col] = rng.choice([b'"', b"'", b" ", b"  "]) + row[col] + rng.choice([b'"', b"'", b" ", b""])
        elif kind == 9:  # an all-empty row, maybe many times
            rows.extend([[b""] * width] * rng.choice([1, 2, 4, 100, 2000]))
        elif kind == 10:  # a row of different width repeated
            rows.extend([[number(rng)] * rng.randrange(1, 2 * width + 2)] * rng.choice([1, 3]))
        else:  # a row duplicated
            rows.insert(rng.randrange(len(rows) + 1), list(row))
    newline = rng.choice([b"\n", b"\n", b"\n", b"\r\n", b"\r", b"\n\n"])
    body = newline.join(b",".join(row) for row in rows) + rng.choice([b"", newline])
    return rng.choice([b"", b"", b"", b"\xef\xbb\xbf", b" ", b"\n"]) + body


# ---- JSON and JSON Lines -----------------------------------------------------------------------------------
class Raw(bytes):
    """Text put into a JSON document verbatim (a number no encoder would write, a broken token)."""


def dumps(value: object) -> bytes:
    """JSON text for dicts, lists, str, numbers (NaN and Infinity as Python writes them) and Raw."""
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, dict):
        return b"{" + b", ".join(dumps(str(k)) + b": " + dumps(v) for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b", ".join(dumps(v) for v in value) + b"]"
    return json.dumps(value).encode()


ODD_JSON: list[object] = [
    Raw(b"1" + b"0" * 309), Raw(b"-1" + b"0" * 400), Raw(b"1" * 5000), Raw(b"1e400"), Raw(b"-1e400"), Raw(b"1e-400"),
    Raw(b"NaN"), Raw(b"Infinity"), Raw(b"-Infinity"), Raw(b"1" + b"0" * 38), Raw(b"3.5e38"), 2 ** 31, 2 ** 63, 2 ** 64,
    -1, 0, 1.5, True, False, None, "1", "", "\ud800", [], {}, [[1.0]], {"values": [1]}, Raw(b"[" * 3000 + b"]" * 3000),
    Raw(b"\xff"), Raw(b"\"\xff\""), Raw(b"01"), Raw(b"1."), Raw(b".5"), Raw(b"+1"), Raw(b"0x1"),
]


def _instance(rng: Rng, width: int, ints: tuple[int, ...]) -> object:
    values: list[object] = [_finite_json(number(rng, c in ints)) for c in range(width)]
    form = rng.randrange(5)
    if form == 0:
        return values
    if form == 1:
        return {"features": values}
    if form == 2:
        return {"data": {"features": {"values": values}}}
    keys = sorted(rng.sample(range(width), rng.randrange(width + 1)))
    sparse = {"keys": keys, "shape": [width], "values": [values[k] for k in keys]}
    return {"data": {"features": sparse}} if form == 3 else {"features": sparse}


def _finite_json(text: bytes) -> float:
    try:
        value = json.loads(text)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
    except (ValueError, OverflowError):
        return 0.0


def json_document(rng: Rng, width: int, ints: tuple[int, ...] = ()) -> object:
    instances = [_instance(rng, width, ints) for _ in range(rng.choice([1, 1, 2, 3, 10]))]
    form = rng.randrange(4)
    if form == 0:
        return {"instances": instances}
    if form == 1:
        return instances
    if form == 2 and isinstance(instances[0], list):
        return instances[0]  # a single bare row
    return instances[0] if isinstance(instances[0], dict) else {"instances": instances}


def json_valid(rng: Rng, width: int, ints: tuple[int, ...] = ()) -> bytes:
    return dumps(json_document(rng, width, ints))


def _mutate_tree(rng: Rng, tree: object, width: int) -> object:
    """One change somewhere in a JSON tree: a value replaced, a key dropped or renamed, a list changed."""
    if rng.random() < 0.25 or not isinstance(tree, (dict, list)) or not tree:
        return rng.choice(ODD_JSON + [tree, [tree], {"instances": tree}, {"features": tree}, {"data": tree}])
    if isinstance(tree, dict):
        key = rng.choice(list(tree))
        pick = rng.random()
        if pick < 0.1:
            return {k: v for k, v in tree.items() if k != key}
        if pick < 0.2:
            return {(rng.choice(["instance", "Features", "feature", "value", "key", "shape", "keys"]) if k == key
                     else k): v for k, v in tree.items()}
        if pick < 0.3 and key == "shape":
            shape = rng.choice([[0], [-1], [2 ** 31], [2 ** 40, 2 ** 40], [2 ** 63], [2 ** 64], [1.5], [width, width],
                                [], ["4"], [True], [10 ** 20], [width + 1], [1]])
            return {**tree, key: shape}
        if pick < 0.4 and key == "keys":
            keys = rng.choice([[-1], [width], [2 ** 31], [2 ** 63], [1.0], [True], ["0"], [0, 0], [1, 0], [None]])
            return {**tree, key: keys}
        return {**tree, key: _mutate_tree(rng, tree[key], width)}
    index = rng.randrange(len(tree))
    pick = rng.random()
    if pick < 0.1:
        return tree[:index] + tree[index + 1:]
    if pick < 0.2:
        return tree + [tree[index]] * rng.choice([1, 5, 500])
    if pick < 0.3:
        return tree[:index] + [rng.choice(ODD_JSON)] + tree[index:]
    return tree[:index] + [_mutate_tree(rng, tree[index], width)] + tree[index + 1:]


def json_mutant(rng: Rng, width: int, ints: tuple[int, ...] = ()) -> bytes:
    tree = json_document(rng, width, ints)
    for _ in range(rng.randrange(1, 4)):
        tree = _mutate_tree(rng, tree, width)
    text = dumps(tree)
    if rng.random() < 0.2:
        text = byte_mutant(rng, text)
    return text


def jsonlines_valid(rng: Rng, width: int, ints: tuple[int, ...] = ()) -> bytes:
    lines = [dumps(_instance(rng, width, ints)) for _ in range(rng.choice([1, 1, 2, 3, 10]))]
    return b"\n".join(lines) + (b"\n" if rng.random() < 0.7 else b"")


def jsonlines_mutant(rng: Rng, width: int, ints: tuple[int, ...] = ()) -> bytes:
    lines = [_instance(rng, width, ints) for _ in range(rng.choice([1, 1, 2, 3, 10]))]
    for _ in range(rng.randrange(1, 4)):
        index = rng.randrange(len(lines))
        lines[index] = _mutate_tree(rng, lines[index], width)
    texts = [dumps(line) for line in lines]
    if rng.random() < 0.3:
        texts.insert(rng.randrange(len(texts) + 1), rng.choice([b"", b" ", b"\r", b"{", b"]", b"\x00", b"\xff",
                                                                b"\x0b", b"\x1c", b"\xc2\x85", b"#"]))
    body = rng.choice([b"\n", b"\r\n", b"\r", b"\n\n"]).join(texts)
    return byte_mutant(rng, body) if rng.random() < 0.2 else body


# ---- RecordIO-protobuf -------------------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    """Any integer, negative or past 64 bits too, as at most 10 varint bytes (a fuzzer wants all of them)."""
    return recordio._varint(value & ((1 << 70) - 1))


def _field(number: int, body: bytes, wire: int = 2) -> bytes:
    return _varint(number << 3 | wire) + _varint(len(body)) + body


def frame(payload: bytes, cflag: int = 0, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack("<II", MAGIC, (cflag << 29) | (size & ((1 << 29) - 1))) + payload + b"\0" * (-len(payload) % 4)


def tensor(kind: str, values: list[float], keys: list[int] | None = None, shape: list[int] | None = None) -> bytes:
    """A Value message holding a float32 (2), float64 (3) or int32 (7) tensor, or a bytes Value (9)."""
    if kind == "float32":
        with np.errstate(over="ignore"):
            packed, field = np.asarray(values, "<f4").tobytes(), 2
    elif kind == "float64":
        packed, field = np.asarray(values, "<f8").tobytes(), 3
    elif kind == "int32":
        packed, field = b"".join(_varint(int(v) if np.isfinite(v) else 1 << 40) for v in values), 7
    else:
        packed, field = np.asarray(values, "<f8").tobytes(), 9
    body = _field(1, packed) if values else b""
    if keys:
        body += _field(2, b"".join(_varint(k) for k in keys))
    if shape:
        body += _field(3, b"".join(_varint(s) for s in shape))
    return _field(field, body)


def record(features: bytes | None, label: bytes | None = None, name: bytes = b"values") -> bytes:
    out = b""
    if features is not None:
        out += _field(1, _field(1, name) + _field(2, features))
    if label is not None:
        out += _field(2, _field(1, b"values") + _field(2, label))
    return out


def _record_row(rng: Rng, width: int, ints: tuple[int, ...], odd: bool) -> bytes:
    kind = rng.choice(["float32", "float32", "float64", "int32"])
    values = [_finite_json(number(rng, c in ints)) if kind != "int32" else rng.randrange(-3, 4)
              for c in range(width)]
    label = tensor(rng.choice(["float32", "float64"]), [rng.random()]) if rng.random() < 0.3 else None
    if rng.random() < 0.3:  # sparse
        keys = sorted(rng.sample(range(width), rng.randrange(width + 1)))
        kept = [values[k] for k in keys]
        shape = [width]
        if odd:
            pick = rng.randrange(8)
            if pick == 0:
                keys = keys + [rng.choice([width, 2 ** 31, 2 ** 32 + 1, 2 ** 63, 2 ** 64 - 1])]
                kept.append(1.0)
            elif pick == 1:
                shape = rng.choice([[], [0], [2 ** 31], [2 ** 40, 2 ** 40], [2 ** 64 - 1], [width, 3], [1]])
            elif pick == 2:
                keys = keys[::-1] + keys[:1]
            elif pick == 3:
                kind = "bytes"
            elif pick == 4:
                label = tensor("float32", [1.0], keys=[0], shape=[1])
        return record(tensor(kind, kept + ([1.0] if odd and rng.random() < 0.2 else []), keys, shape), label)
    shape = [width] if rng.random() < 0.5 else None
    if odd:
        pick = rng.randrange(8)
        if pick == 0:
            shape = rng.choice([[width + 1], [0], [2 ** 63], [width, 2], [2 ** 31, 2 ** 31]])
        elif pick == 1:
            values = values[: rng.randrange(width + 1)] + [1.0] * rng.randrange(3)
        elif pick == 2:
            return record(None, label)
        elif pick == 3:
            return record(tensor(kind, values), label, name=rng.choice([b"value", b"", b"\xff"]))
        elif pick == 4:
            kind = "bytes"
        elif pick == 5:
            return record(_field(2, b""), label)  # a Value with an empty tensor
        elif pick == 6:
            values = [float("nan"), float("inf"), -float("inf"), 3.5e38][: width] + values[4:]
    return record(tensor(kind, values, shape=shape), label)


def recordio_valid(rng: Rng, width: int, ints: tuple[int, ...] = ()) -> bytes:
    rows = rng.choice([1, 1, 2, 3, 10])
    return b"".join(frame(_record_row(rng, width, ints, False)) for _ in range(rows))


def recordio_mutant(rng: Rng, width: int, ints: tuple[int, ...] = ()) -> bytes:
    records = [_record_row(rng, width, ints, rng.random() < 0.3) for _ in range(rng.choice([1, 1, 2, 3, 10]))]
    frames = [frame(r) for r in records]
    for _ in range(rng.randrange(1, 4)):
        index = rng.randrange(len(frames))
        payload = records[index] if index < len(records) else frames[index][8:]
        pick = rng.randrange(9)
        if pick == 0:  # a wrong length
            frames[index] = frame(payload, length=rng.choice([0, 1, len(payload) + 1, len(payload) - 1,
                                                              (1 << 29) - 1, rng.randrange(1 << 29)]))
        elif pick == 1:  # a wrong continuation flag, or a record split in two parts
            if rng.random() < 0.5 or len(payload) < 8:
                frames[index] = frame(payload, cflag=rng.randrange(1, 8))
            else:
                cut = rng.randrange(1, len(payload) // 4) * 4
                frames[index] = frame(payload[:cut], cflag=1) + frame(payload[cut:], cflag=rng.choice([2, 3, 1, 0]))
        elif pick == 2:  # bad magic
            frames[index] = struct.pack("<I", rng.choice([0, MAGIC ^ 1, 0x0A23D7CE])) + frames[index][4:]
        elif pick == 3:  # truncated
            frames[index] = frames[index][: rng.randrange(len(frames[index]) + 1)]
        elif pick == 4:  # flipped bytes in the payload
            frames[index] = frames[index][:8] + _flip(rng, frames[index][8:])
        elif pick == 5:  # garbage between frames
            frames.insert(index, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))))
        elif pick == 6:  # a record of another width
            frames.insert(index, frame(_record_row(rng, rng.choice([1, width + 1, 2 * width]), (), False)))
        elif pick == 7:  # a record repeated
            frames.extend([frames[index]] * rng.choice([2, 100, 2000]))
        else:  # an unknown protobuf field or a field of the wrong wire type
            extra = rng.choice([_field(15, b"x"), _varint(8), _varint(1 << 3 | 5) + b"\0\0\0\0", _varint(1 << 3 | 1),
                                _varint(1 << 3 | 2) + _varint(1 << 40), b"\xff" * 11])
            frames[index] = frame(payload + extra)
    return b"".join(frames)


def _flip(rng: Rng, data: bytes) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(out))
        out[i] = rng.choice([out[i] ^ (1 << rng.randrange(8)), 0, 0xFF, 0x80, 0x7F, rng.randrange(256)])
    return bytes(out)


# ---- libsvm ------------------------------------------------------------------------------------------------
ODD_INDICES = [b"0", b"-1", b"99999999999999999999", b"2147483647", b"2147483648", b"2147483646", b"4294967296",
               b"9223372036854775808", b"1e3", b"1.5", b"", b"+1", b"0x1", b"nan", b"\xff", b"qid", b"1 ", b"01"]


def libsvm_valid(rng: Rng, width: int, labelled: bool = False) -> bytes:
    lines = []
    for _ in range(rng.choice([1, 1, 2, 3, 10])):
        keys = sorted(rng.sample(range(width), rng.randrange(width + 1)))
        tokens = [number(rng).replace(b",", b"")] if labelled or rng.random() < 0.5 else []
        tokens += [b"%d:%s" % (k, number(rng)) for k in keys]
        lines.append(b" ".join(tokens))
    return b"\n".join(lines) + (b"\n" if rng.random() < 0.7 else b"")


def libsvm_mutant(rng: Rng, width: int, labelled: bool = False) -> bytes:
    lines = [line.split(b" ") for line in libsvm_valid(rng, width, labelled).rstrip(b"\n").split(b"\n")]
    for _ in range(rng.randrange(1, 5)):
        tokens = rng.choice(lines)
        at = rng.randrange(len(tokens) + 1)
        pick = rng.randrange(10)
        if pick == 0:  # an odd index
            tokens.insert(at, rng.choice(ODD_INDICES) + b":" + number(rng))
        elif pick == 1:  # an odd value
            tokens.insert(at, b"%d:%s" % (rng.randrange(width), rng.choice(ODD_NUMBERS)))
        elif pick == 2:  # qid, weights
            tokens.insert(min(at, 1), b"qid:" + rng.choice(ODD_NUMBERS + [b"1", b"9007199254740993", b"-5"]))
        elif pick == 3:
            tokens.insert(0, number(rng) + b":" + rng.choice(ODD_NUMBERS + [b"0.5"]))
        elif pick == 4:  # a token without a colon or with two
            tokens.insert(at, rng.choice([b"1", b"a", b"1:2:3", b":", b"::", b":1", b"1:", b"#c", b"1:#"]))
        elif pick == 5:  # a duplicate or out-of-order index
            tokens.insert(at, b"%d:1" % rng.randrange(width))
        elif pick == 6:  # separators
            tokens.insert(at, rng.choice(SEPARATORS))
        elif pick == 7:  # the line truncated
            text = b" ".join(tokens)
            tokens[:] = [text[: rng.randrange(len(text) + 1)]]
        elif pick == 8:  # an index past the model's width
            tokens.insert(at, b"%d:1" % rng.choice([width, width + 1, 10 ** 6, 2 ** 30]))
        else:  # blank lines and comments
            lines.insert(rng.randrange(len(lines) + 1), [rng.choice([b"", b" ", b"\t", b"#", b"# x 1:2", b"\r"])])
    return rng.choice([b"\n", b"\r\n", b"\n\n"]).join(b" ".join(t) for t in lines) + rng.choice([b"", b"\n"])


# ---- any content type ----------------------------------------------------------------------------------------
def byte_mutant(rng: Rng, body: bytes) -> bytes:
    """Flips, inserts of odd text, deletions, duplications and cuts."""
    data = bytearray(body)
    for _ in range(rng.randrange(1, 5)):
        at = rng.randrange(len(data) + 1)
        pick = rng.randrange(6)
        if pick == 0 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif pick == 1:
            data[at:at] = rng.choice(ODD_NUMBERS + SEPARATORS)
        elif pick == 2:
            del data[at : at + rng.randrange(1, 16)]
        elif pick == 3:
            data[at:at] = data[at : at + rng.randrange(1, 64)] * rng.choice([1, 2, 10])
        elif pick == 4:
            del data[at:]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    return bytes(data)


def random_bytes(rng: Rng) -> bytes:
    alphabet = rng.choice([bytes(range(256)), b"0123456789,.-e\n ", b"{}[]\":,0123456789 \n", b"0123456789: \n"])
    return bytes(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 8, 64, 512])))


VALID: dict[str, Callable[..., bytes]] = {"csv": csv_valid, "json": json_valid, "jsonlines": jsonlines_valid,
                                          "recordio": recordio_valid, "libsvm": libsvm_valid}
MUTANT: dict[str, Callable[..., bytes]] = {"csv": csv_mutant, "json": json_mutant, "jsonlines": jsonlines_mutant,
                                           "recordio": recordio_mutant, "libsvm": libsvm_mutant}


def body(kind: str, rng: Rng, width: int, ints: tuple[int, ...] = ()) -> bytes:
    """One request body for a reader kind: mostly malformed, some valid, a few from the known-bad corpus."""
    extra = (ints,) if kind != "libsvm" else ()
    pick = rng.random()
    if pick < 0.08:
        out = VALID[kind](rng, width, *extra)
    elif pick < 0.6:
        out = MUTANT[kind](rng, width, *extra)
    elif pick < 0.88:
        out = byte_mutant(rng, VALID[kind](rng, width, *extra))
    elif pick < 0.96:
        out = random_bytes(rng)
    else:
        return rng.choice([b for k, b, _ in KNOWN_BAD if k == kind] or [b""])
    return out[:MAX_BODY]
