"""What /invocations answers with: a loaded model behind the one request path, or the user's inference
module in script mode. Both take the body and the two headers and return (body, Content-Type)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from common.algorithm import Algorithm
from common.data.registry import encode
from common.errors import NoContent, UserError
from common.serving.request import Negotiation


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
