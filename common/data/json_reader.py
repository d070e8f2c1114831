"""application/json and application/jsonlines request bodies (docs/data.md, "JSON and JSON Lines").

Instance forms: a bare list of numbers, {"features": [...]},
{"data": {"features": {"values": [...]}}} and the sparse
{"data": {"features": {"keys": [...], "shape": [d], "values": [...]}}}.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp

from common.data.batch import Batch
from common.errors import UserError

MAX_WIDTH = (1 << 31) - 1  # column indices are int32 downstream
_MAX_DIGITS = getattr(sys, "get_int_max_str_digits", lambda: 4300)  # Python 3.11+ and 3.10.7+ have it


class JsonReader:
    def parse(self, body: bytes, source: str = "request") -> Batch:
        document = _loads(body, source)
        if isinstance(document, dict) and "instances" in document:
            instances = document["instances"]
        elif isinstance(document, list):
            instances = document
        elif isinstance(document, dict):
            instances = [document]
        else:
            raise UserError(f"The JSON body of {source} must be an object with 'instances' or a list of rows.")
        if not isinstance(instances, list):
            raise UserError(f"'instances' in {source} must be a list.")
        if instances and all(isinstance(v, (int, float)) for v in instances):
            instances = [instances]  # a single bare row
        return rows_to_batch(instances, source)

    def batches(self, stream: BinaryIO, source: str, batch_rows: int) -> Iterator[Batch]:
        yield self.parse(stream.read(), source)


class JsonLinesReader:
    def parse(self, body: bytes, source: str = "request") -> Batch:
        instances = []
        for number, line in enumerate(body.splitlines(), start=1):
            if line.strip():
                instances.append(_loads(line, f"line {number} of {source}"))
        return rows_to_batch(instances, source)

    def batches(self, stream: BinaryIO, source: str, batch_rows: int) -> Iterator[Batch]:
        yield self.parse(stream.read(), source)


def _loads(text: bytes, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"The body of {where} is not valid JSON: {exc.msg}.") from None
    except UnicodeDecodeError:
        raise UserError(f"The body of {where} is not valid JSON: not UTF-8.") from None
    except RecursionError:
        raise UserError(f"The body of {where} nests JSON arrays or objects too deeply.") from None
    except ValueError:  # an integer of more digits than Python converts (4,300 by default)
        raise UserError(f"The body of {where} holds an integer of more than {_MAX_DIGITS()} "
                        "digits; send numbers a float32 can hold.") from None


def rows_to_batch(instances: list[Any], source: str) -> Batch:
    dense: list[list[float]] = []
    sparse: list[tuple[list[int], list[float], int]] = []
    for index, instance in enumerate(instances):
        values, keys, width = _instance(instance, index, source)
        if keys is None:
            dense.append(values)
            sparse.append((list(range(len(values))), values, len(values)))
        else:
            sparse.append((keys, values, width))
    if len(dense) == len(instances):
        return Batch(_dense_matrix(dense, source), None, 1, source)
    return Batch(_sparse_matrix(sparse, source), None, 1, source)


def _instance(instance: Any, index: int, source: str) -> tuple[list[float], list[int] | None, int]:
    where = f"Row {index + 1} of {source}"
    features = instance
    if isinstance(instance, dict):
        if "features" in instance:
            features = instance["features"]
        elif isinstance(instance.get("data"), dict) and "features" in instance["data"]:
            features = instance["data"]["features"]
        else:
            raise UserError(f"{where} has no 'features' (expected {{\"features\": [...]}} or "
                            "{\"data\": {\"features\": {\"values\": [...]}}}).")
    if isinstance(features, dict):
        if "values" not in features:
            raise UserError(f"{where}: 'features' has no 'values'.")
        values = _numbers(features["values"], where)
        if not features.get("keys"):
            if not values and features.get("shape"):
                return values, [], _shape_width(features["shape"], where)  # an all-zero sparse row
            return values, None, len(values)
        keys = features["keys"]
        if "shape" not in features:
            raise UserError(f"{where}: sparse features need a 'shape'.")
        width = _shape_width(features["shape"], where)
        if not isinstance(keys, list) or len(keys) != len(values):
            raise UserError(f"{where}: 'keys' and 'values' must be lists of the same length.")
        for key in keys:
            if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < width:
                raise UserError(f"{where}: key {key!r} is outside the shape [{width}].")
        return values, keys, width
    return _numbers(features, where), None, 0


def _numbers(values: Any, where: str) -> list[float]:
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise UserError(f"{where}: features must be a list of numbers.")
    return values


def _shape_width(shape: Any, where: str) -> int:
    if not isinstance(shape, list) or not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise UserError(f"{where}: 'shape' must be a list of positive integers.")
    width = math.prod(shape)
    if width > MAX_WIDTH:
        raise UserError(f"{where}: 'shape' {shape} gives {width} features; at most {MAX_WIDTH} are allowed.")
    return width


def _dense_matrix(rows: list[list[float]], source: str) -> np.ndarray:
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    width = len(rows[0])
    for index, row in enumerate(rows):
        if len(row) != width:
            raise UserError(f"Row {index + 1} of {source} has {len(row)} features but row 1 has {width}.")
    try:
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), width)
    except OverflowError:  # an integer beyond float64: infinite as far as the values rule goes
        return np.asarray([[_clamp(v) for v in row] for row in rows], dtype=np.float32).reshape(len(rows), width)


def _clamp(value: float) -> float:
    """JSON integers too large for a float become ±inf, as 1e400 written as a float does."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _sparse_matrix(rows: list[tuple[list[int], list[float], int]], source: str) -> sp.csr_matrix:
    width = rows[0][2]
    for index, (_, _, w) in enumerate(rows):
        if w != width:
            raise UserError(f"Row {index + 1} of {source} has {w} features but row 1 has {width}.")
    indptr = np.cumsum([0] + [len(k) for k, _, _ in rows])
    indices = np.fromiter((k for keys, _, _ in rows for k in keys), dtype=np.int64, count=int(indptr[-1]))
    data = np.fromiter((_clamp(v) for _, values, _ in rows for v in values), dtype=np.float32,
                       count=int(indptr[-1]))
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), width))
