"""A request as the server parsed it: the body, its content type, the negotiated response type and the
options the Accept type's parameters ask for. Nothing after this reads HTTP headers or the environment."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from common.data.content_types import MediaType, negotiate_accept
from common.errors import UnsupportedContentType

DEFAULT_ACCEPT_VAR = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"


@dataclass(frozen=True)
class Options:
    """What `predict` is asked for beyond the predictions, e.g. `Accept: application/json; verbose=true`."""

    verbose: bool = False        # knn: distances and labels; rcf: the per-row detail; lightgbm/catboost: labels
    neighbor_ids: bool = False   # knn: the training row ids of the neighbours

    @classmethod
    def of(cls, accept: MediaType) -> Options:
        return cls(verbose=accept.flag("verbose"), neighbor_ids=accept.flag("neighbor_ids"))


@dataclass(frozen=True)
class Request:
    body: bytes
    content_type: MediaType
    accept: MediaType
    options: Options


@dataclass(frozen=True)
class Negotiation:
    """The media types an endpoint takes and answers, fixed when the model is loaded."""

    request_types: tuple[str, ...]
    response_types: tuple[str, ...]
    default_accept: str

    @classmethod
    def of(cls, request_types: tuple[str, ...], response_types: tuple[str, ...], default_accept: str) -> Negotiation:
        """SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, when set, answers a request with no Accept."""
        return cls(request_types, response_types, os.environ.get(DEFAULT_ACCEPT_VAR) or default_accept)

    def parse(self, body: bytes, content_type: str | None, accept: str | None) -> Request:
        """Raises UnsupportedContentType (415) or UnsupportedAccept (406) naming what is supported."""
        media = _content_type(content_type, self.request_types)
        response_type = _response_type(accept, self.response_types, self.default_accept)
        return Request(body, media, response_type, Options.of(response_type))


@functools.lru_cache(maxsize=64)
def _content_type(header: str | None, supported: tuple[str, ...]) -> MediaType:
    if not header:
        raise UnsupportedContentType("The request has no Content-Type; use one of: " + ", ".join(supported) + ".")
    media = MediaType.parse(header)
    if media.name not in supported:
        raise UnsupportedContentType(
            f"Content-Type '{header}' is not supported; use one of: {', '.join(supported)}.")
    return media


@functools.lru_cache(maxsize=64)
def _response_type(header: str | None, supported: tuple[str, ...], default: str) -> MediaType:
    return negotiate_accept(header, supported, default)
