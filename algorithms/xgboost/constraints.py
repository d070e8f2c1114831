"""Constraint objects for XGBoost's structured hyperparameters, parsed safely (never `eval`)."""

from __future__ import annotations

import json
import re
from typing import Any

from algorithms.xgboost.metric_catalog import ALL_METRICS, THRESHOLD_METRICS
from common.constraints import INT32_MAX, Constraint, unquote

_NUMBER = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
_THRESHOLD = re.compile(rf"^([a-z]+)@({_NUMBER})(-)?$")
_TWEEDIE = re.compile(rf"^tweedie-nloglik@({_NUMBER})$")
# XGBoost 3 no longer has distcol and grow_skmaker ("Unknown tree updater").
UPDATERS = ("grow_colmaker", "grow_histmaker", "sync", "refresh", "prune", "grow_quantile_histmaker", "shotgun",
            "coord_descent")


def _items(text: str) -> list[str]:
    """`a,b`, `["a", "b"]` or `['a', 'b']` -> ['a', 'b']."""
    text = unquote(text)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [item.strip().strip("'\"").strip() for item in text.split(",")]


def is_metric(name: str) -> bool:
    if name in ALL_METRICS:
        return True
    tweedie = _TWEEDIE.match(name)
    if tweedie:
        return 1 < float(tweedie.group(1)) < 2
    match = _THRESHOLD.match(name)
    return bool(match) and match.group(1) in THRESHOLD_METRICS


class EvalMetrics(Constraint):
    """Comma-separated metric names (a JSON or Python list is accepted too)."""

    def parse(self, text: str) -> tuple[str, ...]:
        items = _items(text)
        if not items or not all(items) or not all(is_metric(i) for i in items):
            raise ValueError
        return tuple(dict.fromkeys(items))

    def describe(self) -> str:
        return ("a comma-separated list of " + ", ".join(sorted(ALL_METRICS))
                + " (error, ndcg and map also as name@threshold; tweedie-nloglik@rho with 1 < rho < 2)")

    def invalid_examples(self) -> list[str]:
        return ["", "nope", "rmse,nope", "error@x", "<function f>"]


class Updaters(Constraint):
    def parse(self, text: str) -> tuple[str, ...]:
        items = _items(text)
        if not items or not all(i in UPDATERS for i in items):
            raise ValueError
        return tuple(items)

    def describe(self) -> str:
        return "a comma-separated list of " + ", ".join(UPDATERS)

    def invalid_examples(self) -> list[str]:
        return ["", "grow_colmaker,nope"]


def _literal(text: str) -> Any:
    """A Python/JSON literal of nested lists or tuples of integers."""
    text = unquote(text).strip()
    if not re.fullmatch(r"[\[\]()\d\s,+-]*", text):
        raise ValueError
    return json.loads(text.replace("(", "[").replace(")", "]").replace(",]", "]"))


class IntTuple(Constraint):
    """`(0,1,-1)` or `[0,1,-1]`: one of -1, 0, 1 per feature."""

    def parse(self, text: str) -> tuple[int, ...]:
        value = _literal(text)
        if not isinstance(value, list) or not value or not all(v in (-1, 0, 1) and type(v) is int for v in value):
            raise ValueError
        return tuple(value)

    def describe(self) -> str:
        return "a tuple of -1, 0 or 1 per feature, e.g. (0,1,-1)"

    def invalid_examples(self) -> list[str]:
        return ["", "(2)", "(1,a)", "abc", "()"]


class NestedIntLists(Constraint):
    """`[[1,2],[3,4,5]]`: groups of feature indices allowed to interact."""

    def parse(self, text: str) -> tuple[tuple[int, ...], ...]:
        value = _literal(text)
        if not isinstance(value, list) or not value or not all(isinstance(g, list) and g for g in value):
            raise ValueError
        if not all(type(i) is int and 0 <= i <= INT32_MAX for g in value for i in g):
            raise ValueError
        return tuple(tuple(g) for g in value)

    def describe(self) -> str:
        return "a list of lists of feature indices, e.g. [[1,2],[3,4,5]]"

    def invalid_examples(self) -> list[str]:
        return ["", "[1,2]", "[[a]]", "[[-1]]", "[[]]", f"[[{INT32_MAX + 1}]]"]
