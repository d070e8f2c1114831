"""A transform job's DataProcessing, which SageMaker applies outside the container: InputFilter, JoinSource,
OutputFilter over CSV, JSON and JSON Lines records.

A CSV record (one line) is a JSON array of its fields, as strings; a JSON record is the parsed value. The
JSONPath subset is the one SageMaker lists:

    $                  the record
    .name  ['name']    a child of an object (`.name` takes letters, digits, _ and -)
    ['a','b']          several children: as the last step, an object of just those keys; before it, their values
    .*  [*]            every child (object values or array elements)
    [1]  [-1]          an array element (negative counts from the end)
    [1,3,5]            several elements
    [2:5] [:5] [2:]    a slice, both ends included, as SageMaker's examples read it ($[1:4]: the 2nd to 5th)
    [0,5:]             indexes and slices mixed

A path of names and single indexes gives one value; any other step gives a list. A missing name or an index
outside the array is an error, as SageMaker reports indexes outside the joined record. Filters, recursive
descent (`..`), `@` and scripts are not supported.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any

CSV, JSON, JSONLINES = "text/csv", "application/json", "application/jsonlines"
FORMATS = (CSV, JSON, JSONLINES)
_NAME = re.compile(r"\.([A-Za-z0-9_\-]+)")
_QUOTED = re.compile(r"""\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*""")
_SLICE = re.compile(r"\s*(-?\d*)\s*:\s*(-?\d*)\s*")
_INDEX = re.compile(r"\s*(-?\d+)\s*")


class PathError(ValueError):
    """A JSONPath outside the supported subset, or one that does not fit the record."""


@dataclass(frozen=True)
class Step:
    kind: str  # "name", "names", "wildcard", "index", "indexes"
    names: tuple[str, ...] = ()
    # For "index"/"indexes": each entry is an int, or a (start, end) slice with None for an open end.
    items: tuple[int | tuple[int | None, int | None], ...] = ()


@dataclass(frozen=True)
class JsonPath:
    text: str
    steps: tuple[Step, ...]

    @classmethod
    def parse(cls, text: str | None) -> JsonPath:
        text = (text or "$").strip()
        if not text.startswith("$"):
            raise PathError(f"JSONPath {text!r} must start with $")
        steps, position = [], 1
        while position < len(text):
            step, position = _parse_step(text, position)
            steps.append(step)
        return cls(text, tuple(steps))

    @property
    def is_root(self) -> bool:
        return not self.steps

    def apply(self, record: Any) -> Any:
        nodes, single = [record], True
        for number, step in enumerate(self.steps):
            last = number == len(self.steps) - 1
            nodes, single = _apply_step(step, nodes, single, last, self.text)
        return nodes[0] if single else nodes


def _parse_step(text: str, position: int) -> tuple[Step, int]:
    if text.startswith(".*", position):
        return Step("wildcard"), position + 2
    if text.startswith(".[", position):
        position += 1  # `$.field.['a','b']` is written both ways
    if text[position] == ".":
        match = _NAME.match(text, position)
        if not match:
            raise PathError(f"JSONPath {text!r}: expected a name after '.' at character {position + 1}")
        return Step("name", (match.group(1),)), match.end()
    if text[position] != "[":
        raise PathError(f"JSONPath {text!r}: unexpected {text[position]!r} at character {position + 1} "
                        "(supported: .name, ['name'], [*], [n], [n,m], [start:end])")
    end = text.find("]", position)
    if end < 0:
        raise PathError(f"JSONPath {text!r}: '[' at character {position + 1} is not closed")
    inside = text[position + 1:end]
    if inside.strip() == "*":
        return Step("wildcard"), end + 1
    parts = _split_union(inside, text)
    if all(_QUOTED.fullmatch(part) for part in parts):
        names = tuple(_unquote(_QUOTED.fullmatch(part)) for part in parts)
        return Step("name" if len(names) == 1 else "names", names), end + 1
    items: list[int | tuple[int | None, int | None]] = []
    for part in parts:
        if slice_match := _SLICE.fullmatch(part):
            start, stop = slice_match.groups()
            items.append((int(start) if start else None, int(stop) if stop else None))
        elif index_match := _INDEX.fullmatch(part):
            items.append(int(index_match.group(1)))
        else:
            raise PathError(f"JSONPath {text!r}: [{inside}] is not a name list, index list or slice "
                            "(filters, scripts and steps are not supported)")
    single = len(items) == 1 and isinstance(items[0], int)
    return Step("index" if single else "indexes", items=tuple(items)), end + 1


def _split_union(inside: str, text: str) -> list[str]:
    """The comma-separated parts of a bracket, commas inside quotes kept."""
    parts, current, quote = [], "", ""
    for char in inside:
        if quote:
            current += char
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote, current = char, current + char
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    if any(not part.strip() for part in parts):
        raise PathError(f"JSONPath {text!r}: empty entry in [{inside}]")
    return parts


def _unquote(match: re.Match) -> str:
    raw = match.group(1) if match.group(1) is not None else match.group(2)
    return re.sub(r"\\(.)", r"\1", raw)


def _apply_step(step: Step, nodes: list, single: bool, last: bool, text: str) -> tuple[list, bool]:
    if step.kind == "name":
        return [_child(node, step.names[0], text) for node in nodes], single
    if step.kind == "names":
        if last:
            return [{name: _child(node, name, text) for name in step.names} for node in nodes], single
        return [_child(node, name, text) for node in nodes for name in step.names], False
    if step.kind == "wildcard":
        out = []
        for node in nodes:
            if isinstance(node, dict):
                out.extend(node.values())
            elif isinstance(node, list):
                out.extend(node)
            else:
                raise PathError(f"JSONPath {text!r}: * needs an object or array, got {_kind(node)}")
        return out, False
    out = []
    for node in nodes:
        if not isinstance(node, list):
            raise PathError(f"JSONPath {text!r}: an index needs an array, got {_kind(node)}")
        for item in step.items:
            out.extend(_slice(node, item, text) if isinstance(item, tuple) else [_element(node, item, text)])
    return out, single and step.kind == "index"


def _child(node: Any, name: str, text: str) -> Any:
    if not isinstance(node, dict):
        raise PathError(f"JSONPath {text!r}: .{name} needs an object, got {_kind(node)}")
    if name not in node:
        raise PathError(f"JSONPath {text!r}: the record has no {name!r}")
    return node[name]


def _element(array: list, index: int, text: str) -> Any:
    if not -len(array) <= index < len(array):
        raise PathError(f"JSONPath {text!r}: index {index} is outside the record's {len(array)} fields")
    return array[index]


def _slice(array: list, bounds: tuple[int | None, int | None], text: str) -> list:
    start, end = bounds
    n = len(array)
    first = 0 if start is None else (start + n if start < 0 else start)
    last = n - 1 if end is None else (end + n if end < 0 else end)
    if first < 0 or first >= n or last >= n:
        raise PathError(f"JSONPath {text!r}: [{'' if start is None else start}:{'' if end is None else end}] "
                        f"is outside the record's {n} fields")
    return array[first:last + 1]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), type(value).__name__)


# ---- records ----------------------------------------------------------------------------------------------

def media_name(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def parse_record(line: bytes, media: str) -> Any:
    text = line.decode("utf-8")
    if media == CSV:
        return next(csv.reader([text]), [])
    return json.loads(text)


def write_record(value: Any, media: str) -> str:
    """One record as one line of `media`, without its newline."""
    if media == CSV:
        fields = value if isinstance(value, list) else [value]
        if any(isinstance(field, (dict, list)) for field in fields):
            raise PathError("a CSV record's fields must be plain values, not objects or arrays")
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(fields)
        return out.getvalue()
    return json.dumps(value, separators=(",", ":"))


def output_records(body: bytes, accept: str) -> list[Any]:
    """A response split into one parsed record per input record: CSV and JSON Lines answer a line each,
    application/json a single document."""
    if accept == JSON:
        return [json.loads(body)] if body.strip() else []
    return [parse_record(line, accept) for line in body.splitlines() if line.strip()]


def join(source: Any, output: Any, input_media: str, output_media: str) -> Any:
    """JoinSource=Input: a CSV row with the output's fields appended; a JSON object with SageMakerOutput
    added, or {"SageMakerInput", "SageMakerOutput"} for any other JSON value."""
    if input_media == CSV:
        if output_media != CSV:
            raise PathError("JoinSource=Input with text/csv input needs text/csv output (Accept)")
        return [*source, *output]
    if output_media == CSV:
        output = [_number_or_text(field) for field in output]
        output = output[0] if len(output) == 1 else output
    if isinstance(source, dict):
        return {**source, "SageMakerOutput": output}
    return {"SageMakerInput": source, "SageMakerOutput": output}


def _number_or_text(field: str) -> Any:
    try:
        value = json.loads(field)
    except ValueError:
        return field
    return value if isinstance(value, (int, float)) else field
