"""A model served by the user's inference module: model_fn loads it, and input_fn / predict_fn / output_fn,
or transform_fn alone, answer each request, with the image's defaults (ScriptMode) for those left out.

As in SageMaker's inference toolkit, a handler that takes one parameter more than usual gets a `context`
last. The body is text for text/csv and application/json, bytes otherwise; a missing Content-Type means
application/json, a missing or */* Accept SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, else JSON.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.data import content_types as ct
from common.data import csv_numpy
from common.data.content_types import MediaType
from common.errors import UserError

if TYPE_CHECKING:
    from common.script_mode import ScriptMode

log = logging.getLogger(__name__)
HOOKS = ("input_fn", "predict_fn", "output_fn")
TRANSFORM_CONFLICT = "Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn"


@dataclass
class Context:
    """The toolkit's `context` argument, as far as a single-model endpoint without GPUs has one."""

    model_name: str
    system_properties: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None


class Handler:
    """One of the user's functions (or a default); its own exceptions become one readable 500."""

    def __init__(self, name: str, function: Callable[..., Any], arguments: int, context: Context) -> None:
        self.name, self.function = name, function
        self.context = context if _parameter_count(function) == arguments + 1 else None

    def __call__(self, *args: Any) -> Any:
        try:
            return self.function(*args) if self.context is None else self.function(*args, self.context)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
            log.exception("%s failed.", self.name)
            lines = [line for line in str(exc).splitlines() if line.strip()]
            raise UserError(f"{self.name} raised {type(exc).__name__}: {lines[0][:300] if lines else ''}",
                            status=500) from None


class UserModule:
    """The endpoint `create_app` serves in script mode: the user's handlers answer every request."""

    def __init__(self, module: Any, model_dir: Path, mode: ScriptMode) -> None:
        found = {n: getattr(module, n, None) for n in ("model_fn", "transform_fn", *HOOKS)}
        if found["model_fn"] is None and mode.model_fn is None:
            raise UserError(f"The inference module {module.__name__} has no model_fn(model_dir): {mode.framework} "
                            "script mode has no default way to load a model, so define one.", status=500)
        if found["transform_fn"] is not None and any(found[n] is not None for n in HOOKS):
            raise UserError(TRANSFORM_CONFLICT, status=500)
        context = Context(module.__name__, {"model_dir": str(model_dir), "gpu_id": None, "batch_size": 1})
        transform_fn = found["transform_fn"]
        self.transform_fn = Handler("transform_fn", transform_fn, 4, context) if transform_fn is not None else None
        self.input_fn = Handler("input_fn", found["input_fn"] or mode.input_fn, 2, context)
        self.default_input = found["input_fn"] is None
        self.predict_fn = Handler("predict_fn", found["predict_fn"] or mode.predict_fn, 2, context)
        self.output_fn = Handler("output_fn", found["output_fn"] or mode.output_fn, 2, context)
        try:
            self.model = Handler("model_fn", found["model_fn"] or mode.model_fn, 1, context)(str(model_dir))
        except UserError as exc:
            if found["model_fn"] is not None:
                raise
            raise UserError(f"The inference module {module.__name__} has no model_fn(model_dir), and the "
                            f"default one could not load the model: {exc.message}", status=500) from None

    def answer(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        content_type = content_type or ct.JSON
        if not accept or accept.strip() == "*/*":
            accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or ct.JSON
        data: bytes | str = body
        if MediaType.parse(content_type).name in (ct.CSV, ct.JSON):
            try:
                data = body.decode()
            except UnicodeDecodeError:
                raise UserError(f"The {content_type} body is not UTF-8 text.") from None
        if self.transform_fn is not None:
            result = self.transform_fn(self.model, data, content_type, accept)
        else:
            result = self.output_fn(self.predict_fn(self.input_fn(data, content_type), self.model), accept)
        return _as_response(result, accept)

    def warm_up(self) -> None:
        """The user's model_fn already ran; their handlers are theirs to warm. The image's default input_fn is not
        theirs: a one-value CSV body through it loads the CSV reader now, not on the first request. That reader
        takes this server's first CSV bodies with numpy (csv_numpy.py), as a training job's does: nothing here
        imports numba, whose import (about 0.18 s) fell on the first CSV request."""
        csv_numpy.grant()
        if self.transform_fn is None and self.default_input:
            with contextlib.suppress(UserError):
                self.input_fn("0\n", ct.CSV)


def _parameter_count(function: Callable[..., Any]) -> int:
    try:
        return len(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # a builtin without a signature: called with the usual arguments
        return -1


def _as_response(result: Any, accept: str) -> tuple[bytes, str]:
    content_type = accept
    if isinstance(result, tuple) and len(result) == 2:
        result, content_type = result
    if isinstance(result, str):
        result = result.encode()
    if not isinstance(result, (bytes, bytearray, memoryview)):
        raise UserError(f"output_fn returned {type(result).__name__}; return bytes, str or (body, content_type).",
                        status=500)
    return bytes(result), str(content_type)
