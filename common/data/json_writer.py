"""JSON and JSON Lines response bodies (numbers as the shortest round-trip text: `1.0`, `0.2704618871212`)."""

from __future__ import annotations

import json

from common.data.columns import Columns, ResponseLayout, python_values, records


def encode_json(columns: Columns, layout: ResponseLayout) -> bytes:
    if layout.envelope is None:
        return json.dumps({name: python_values(values, layout.numbers) for name, values in columns.items()}).encode()
    return json.dumps({layout.envelope: records(columns, layout.numbers)}).encode()


def encode_jsonlines(columns: Columns, layout: ResponseLayout) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records(columns, layout.numbers)).encode()
