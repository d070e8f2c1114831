"""Constraint objects: each parses one hyperparameter string and says in words what it allows.

`parse` raises ValueError on a bad value; `describe` completes the sentence
"must be ..."; `invalid_examples` feeds the generic schema tests.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from typing import Any

_INT = re.compile(r"^[+-]?\d+$")

# Limits of what the libraries and kernels behind the schemas can take.
INT32_MAX = 2**31 - 1              # C int parameters (XGBoost, LightGBM, CatBoost, int32 indices)
INT32_MIN = -(2**31)
FLOAT32_MAX = 3.4028234663852886e38  # parameters stored as float (XGBoost, CatBoost, float32 weights)
MAX_THREADS = 1024                 # OpenMP allocates per requested thread; no instance has more cores
MAX_WEIGHT = 1e20                  # a class weight: float32 sums of it over any realistic row count stay finite
# The smallest positive value float32 libraries take back: XGBoost prints parameters with 9 digits and
# refuses what reads back below float32's smallest normal number (1.1754944e-38).
FLOAT32_TINY = 1e-37


def unquote(text: str) -> str:
    """`"abc"` (a JSON-encoded string, as SDK framework estimators send) -> `abc`."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def _bound(value: float | None) -> str:
    if value is None:
        return "inf"
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)


def _beyond(value: float, direction: float) -> float:
    """A float just past `value` (value + 1 when that is a different number)."""
    step = value + direction
    return step if step != value else math.nextafter(value, direction * math.inf)


class Constraint(ABC):
    @abstractmethod
    def parse(self, text: str) -> Any: ...

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def invalid_examples(self) -> list[str]: ...

    def to_json(self) -> dict[str, Any]:
        return {"type": type(self).__name__.lower(), "allowed": self.describe()}


class _Range(Constraint):
    kind = "number"

    def __init__(self, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def _check(self, value: float) -> None:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise ValueError
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise ValueError

    def describe(self) -> str:
        if self.low is None and self.high is None:
            return f"{self.kind}"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else _bound(self.low)
        return f"{self.kind} in the range {left}{low}, {_bound(self.high)}{right}"

    def _outside(self) -> list[str]:
        out = []
        if self.low is not None:
            out.append(_bound(self.low - 1) if self.kind.startswith("an integer") else repr(_beyond(self.low, -1.0)))
        if self.high is not None:
            out.append(_bound(self.high + 1) if self.kind.startswith("an integer") else repr(_beyond(self.high, 1.0)))
        return out


class Integer(_Range):
    kind = "an integer"

    def parse(self, text: str) -> int:
        text = unquote(text)
        if _INT.match(text):
            value = int(text)
        else:
            number = float(text)  # "10.0" and "1e3" are integers written as floats
            if not math.isfinite(number) or not number.is_integer():
                raise ValueError
            value = int(number)
        self._check(value)
        return value

    def invalid_examples(self) -> list[str]:
        return ["abc", "1.5", "", *self._outside()]


class Real(_Range):
    kind = "a number"

    def parse(self, text: str) -> float:
        value = float(unquote(text))
        if not math.isfinite(value):
            raise ValueError
        self._check(value)
        return value

    def invalid_examples(self) -> list[str]:
        return ["abc", "nan", "", *self._outside()]


class Boolean(Constraint):
    def parse(self, text: str) -> bool:
        word = unquote(text).lower()
        if word in ("true", "1"):
            return True
        if word in ("false", "0"):
            return False
        raise ValueError

    def describe(self) -> str:
        return "true or false"

    def invalid_examples(self) -> list[str]:
        return ["yes", "2", ""]


class Choice(Constraint):
    def __init__(self, *options: str) -> None:
        self.options = options

    def parse(self, text: str) -> str:
        word = unquote(text)
        if word not in self.options:
            raise ValueError
        return word

    def describe(self) -> str:
        return "one of " + ", ".join(f"'{o}'" for o in self.options)

    def invalid_examples(self) -> list[str]:
        return ["not-an-option", ""]

    def to_json(self) -> dict[str, Any]:
        return {"type": "choice", "allowed": list(self.options)}


class Text(Constraint):
    def parse(self, text: str) -> str:
        return unquote(text)

    def describe(self) -> str:
        return "a string"

    def invalid_examples(self) -> list[str]:
        return []


class AutoOr(Constraint):
    """The literal `auto` or a value of the inner constraint (parsed as the string 'auto')."""

    def __init__(self, inner: Constraint) -> None:
        self.inner = inner

    def parse(self, text: str) -> Any:
        if unquote(text) == "auto":
            return "auto"
        return self.inner.parse(text)

    def describe(self) -> str:
        return f"'auto' or {self.inner.describe()}"

    def invalid_examples(self) -> list[str]:
        return ["AUTO", *[e for e in self.inner.invalid_examples() if e]]


class ListOf(Constraint):
    """A list, as JSON (`["msd", "ssd"]`), Python repr (`['msd', 'ssd']`) or bare (`[msd, ssd]`)."""

    def __init__(self, inner: Constraint, min_items: int = 1) -> None:
        self.inner, self.min_items = inner, min_items

    def parse(self, text: str) -> tuple[Any, ...]:
        items = _split_list(text.strip())
        if len(items) < self.min_items:
            raise ValueError
        return tuple(self.inner.parse(item) for item in items)

    def describe(self) -> str:
        return f"a JSON list of {self.inner.describe()}"

    def invalid_examples(self) -> list[str]:
        return ["[]", "not-a-list", *[f'["{e}"]' for e in self.inner.invalid_examples() if e]]


def _split_list(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError
    inner = text[1:-1].strip()
    if not inner:
        return []
    return [item.strip().strip("'\"") for item in inner.split(",")]


def float32_inside(value: Any, constraint: Constraint) -> Any:
    """`value`, unless a library holding it as float32 would round it onto an open bound of `constraint`
    (5e-324 is 0 in float32, 1.9999999999999998 is 2): then the nearest float32 inside (FLOAT32_TINY above 0)."""
    if not isinstance(constraint, Real) or not isinstance(value, float):
        return value
    import numpy as np

    rounded, low, high = np.float32(value), constraint.low, constraint.high
    if constraint.low_open and low is not None and rounded <= low:
        return max(float(np.nextafter(np.float32(low), np.float32(np.inf))), low + FLOAT32_TINY)
    if constraint.high_open and high is not None and rounded >= high:
        return float(np.nextafter(np.float32(high), np.float32(-np.inf)))
    return value
