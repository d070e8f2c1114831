"""An independent decoder for recordIO-protobuf responses (label-only Records), for tests."""

from __future__ import annotations

import struct

MAGIC = struct.pack("<I", 0xCED7230A)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes):
    """(field number, payload) for every length-delimited field of a message."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        if tag & 7 != 2:
            raise AssertionError(f"unexpected wire type {tag & 7}")
        length, pos = _varint(data, pos)
        yield tag >> 3, data[pos:pos + length]
        pos += length


def decode_label_records(body: bytes) -> list[dict[str, list[float]]]:
    """Per record: label name -> float32 values. Features must be empty, as in every response."""
    rows, pos = [], 0
    while pos < len(body):
        assert body[pos:pos + 4] == MAGIC
        (length,) = struct.unpack_from("<I", body, pos + 4)
        payload, pos = body[pos + 8:pos + 8 + length], pos + 8 + length + (-length % 4)
        row = {}
        for field, entry in _fields(payload):
            assert field == 2, "responses carry labels only"
            parts = dict(_fields(entry))
            (kind, tensor), = _fields(parts[2])
            assert kind == 2, "labels are float32 tensors"
            (number, values), = _fields(tensor)
            assert number == 1
            row[parts[1].decode()] = list(struct.unpack(f"<{len(values) // 4}f", values))
        rows.append(row)
    return rows
