"""Declarative hyperparameter schemas and the one parser that reads them.

An algorithm declares a dataclass whose fields are made with `hp(constraint, ...)`.
`parse_hyperparameters(cls, raw)` turns the string map SageMaker writes into an
instance, accepting every encoding the SageMaker Python SDK 2.x produces, and
reports every problem at once, one sentence each.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from typing import Any, ClassVar, TypeVar

from common.constraints import Constraint
from common.errors import UserError, join_problems

log = logging.getLogger(__name__)

_REQUIRED = object()
T = TypeVar("T", bound="Hyperparameters")


def hp(constraint: Constraint, default: Any = _REQUIRED, doc: str = "") -> Any:
    """A hyperparameter field; without a default it is required."""
    required = default is _REQUIRED
    return dataclasses.field(
        default=None if required else default,
        metadata={"constraint": constraint, "required": required, "doc": doc},
    )


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """Base of every algorithm's hyperparameter dataclass."""

    # Other spellings accepted for a field: {"learning_rate": "eta"}.
    aliases: ClassVar[dict[str, str]] = {}
    # Accepted and dropped with a warning: {"silent": "use 'verbosity' instead"}.
    deprecated: ClassVar[dict[str, str]] = {}
    # Names users reach for that mean another field: {"max_iterations": "local_lloyd_max_iter"}.
    hints: ClassVar[dict[str, str]] = {}

    def check(self) -> list[str]:
        """Cross-field rules; one sentence per problem."""
        return []

    @classmethod
    def specs(cls) -> list[dict[str, Any]]:
        """The schema as JSON-ready dicts (for `describe`)."""
        out = []
        for f in dataclasses.fields(cls):
            spec = {"name": f.name, "required": f.metadata["required"], **f.metadata["constraint"].to_json()}
            if not f.metadata["required"]:
                spec["default"] = _jsonable(f.default)
            if f.metadata["doc"]:
                spec["doc"] = f.metadata["doc"]
            out.append(spec)
        return out


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def is_reserved(key: str) -> bool:
    """Keys SageMaker or its SDK add that are never the algorithm's business."""
    return key.startswith("_") or key.startswith("sagemaker_")


def parse_hyperparameters(cls: type[T], raw: dict[str, Any]) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems: list[str] = []
    values: dict[str, Any] = {}
    seen_from: dict[str, str] = {}
    for key, value in raw.items():
        if is_reserved(key):
            continue
        if key in cls.deprecated:
            log.warning("Hyperparameter '%s' is deprecated and ignored: %s.", key, cls.deprecated[key])
            continue
        name = cls.aliases.get(key, key)
        if name not in fields:
            problems.append(_unknown_key_message(key, cls, list(fields)))
            continue
        if name in seen_from:
            problems.append(f"Hyperparameter '{key}' repeats '{seen_from[name]}'; give only one of them")
            continue
        seen_from[name] = key
        constraint: Constraint = fields[name].metadata["constraint"]
        text = value if isinstance(value, str) else str(value)
        try:
            values[name] = constraint.parse(text)
        except ValueError:
            problems.append(f"Hyperparameter '{key}' has invalid value '{text}': must be {constraint.describe()}")
    for name, f in fields.items():
        if f.metadata["required"] and name not in values and name not in seen_from:
            problems.append(f"Hyperparameter '{name}' is required: must be {f.metadata['constraint'].describe()}")
    if problems:
        raise UserError(join_problems(problems))
    instance = cls(**values)
    problems = instance.check()
    if problems:
        raise UserError(join_problems(problems))
    return instance


def _unknown_key_message(key: str, cls: type[Hyperparameters], names: list[str]) -> str:
    if key in cls.hints:
        return f"Hyperparameter '{key}' is not recognised; did you mean '{cls.hints[key]}'?"
    close = difflib.get_close_matches(key, names + list(cls.aliases), n=1, cutoff=0.6)
    if close:
        return f"Hyperparameter '{key}' is not recognised; did you mean '{close[0]}'?"
    return f"Hyperparameter '{key}' is not recognised; allowed: {', '.join(sorted(names))}"
