"""What /invocations answers with: a loaded model behind the one request path, or the user's inference
module in script mode. Both take the body and the two headers and return (body, Content-Type)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol

import numpy as np

from common.algorithm import Algorithm
from common.data import content_types as ct
from common.data.content_types import MediaType
from common.data.registry import encode
from common.errors import NoContent, UserError
from common.serving.request import Negotiation

_FORMATS_WARM: set[type] = set()
WARM_UP_BODIES = {ct.JSON: b'{"instances": [[0]]}', ct.JSONLINES: b'{"features": [0]}\n', ct.LIBSVM: b"1:0\n"}


class Endpoint(Protocol):
    def answer(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        """Raises UserError (with its HTTP status) for a request the caller can fix."""
        ...

    def warm_up(self) -> None: ...


class ModelEndpoint:
    """The request path: negotiate, read the body, check it, predict, write the response."""

    def __init__(self, model: Algorithm) -> None:
        self.model = model
        self.negotiation = Negotiation.of(model.request_types, model.response_types, model.default_accept)

    def answer(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        blank = not body or body.isspace()  # as `not body.strip()`, without copying a 6 MB body
        if blank and self.model.empty_body_status is not None:
            raise NoContent("")
        request = self.negotiation.parse(body, content_type, accept)
        if blank:
            raise UserError("The request body is empty; send at least one row.")
        batch = self.model.request_reader(request.content_type).parse(body)
        if len(batch) == 0:
            raise UserError("The request body holds no rows.")
        batch.check_finite(missing_ok=self.model.handles_missing_values)
        columns = self.model.predict(batch, request.options)
        return encode(columns, request.accept.name, self.model.response_layout), request.accept.name

    def warm_up(self) -> None:
        self.model.warm_up()
        _warm_up_formats(self.model)


def _warm_up_formats(model: Algorithm) -> None:
    """One tiny body through each request reader and each writer, once per algorithm in a process (a multi-model
    endpoint loads many): the first request otherwise imports them and loads their kernels (the CSV reader's
    numba: about 0.2 s)."""
    if type(model) in _FORMATS_WARM:
        return
    _FORMATS_WARM.add(type(model))
    for name in model.request_types:
        with contextlib.suppress(UserError):  # a reader that refuses the tiny body has loaded all the same
            model.request_reader(MediaType(name)).parse(_warm_up_body(name))
    for name in model.response_types:
        encode({"score": np.zeros(1, np.float32)}, name, model.response_layout)


def warm_up_request(endpoint: Endpoint) -> tuple[str, bytes] | None:
    """(Content-Type, body) of a request a worker may send itself before its first client (common/serving/worker.py):
    a built-in model's tiny body, answered 200 or 400 with no side effects. None for the user's handlers."""
    if not isinstance(endpoint, ModelEndpoint):
        return None
    types = endpoint.model.request_types
    name = ct.CSV if ct.CSV in types else next(iter(types))
    return name, _warm_up_body(name)


def _warm_up_body(content_type: str) -> bytes:
    if content_type == ct.RECORDIO:
        from common.data.recordio_writer import encode_dense

        return encode_dense(np.zeros((1, 1), np.float32))
    return WARM_UP_BODIES.get(content_type, b"0\n")


def load_endpoint(algorithm: type[Algorithm], model_dir: Path) -> Endpoint:
    """The user's inference module when the model names one (script mode), else the algorithm's model."""
    if algorithm.script_mode is not None:
        from common.script_mode import serving

        user_module = serving.load(model_dir, algorithm.script_mode)
        if user_module is not None:
            return user_module
    return ModelEndpoint(algorithm.load(model_dir))


def as_endpoint(model: Algorithm | Endpoint) -> Endpoint:
    return ModelEndpoint(model) if isinstance(model, Algorithm) else model
