"""The HTTP contract: a Flask app factory and a pure `invoke` function (spec contract §4).

`create_app` loads the model once, in the calling process (a gunicorn worker, after the fork). An empty
request body is a 400 from `invoke`, unless the algorithm declares `empty_body_status` (XGBoost: 204): then
`/invocations` answers that status with no body before looking at anything else.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import threading
import traceback
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from flask import Flask, Response

from common import content_types as ct
from common.algorithm import Algorithm
from common.content_types import MediaType, negotiate_accept
from common.errors import PayloadTooLarge, UnsupportedContentType, UserError
from common.readers import Reader, reader_for

log = logging.getLogger(__name__)
TEXT = "text/plain; charset=utf-8"
DEFAULT_PAYLOAD_MB = 6


def max_payload_bytes() -> int:
    configured = os.environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "")
    megabytes = int(configured) if configured.isdigit() else DEFAULT_PAYLOAD_MB
    return max(DEFAULT_PAYLOAD_MB, megabytes) << 20


def invoke(model: Algorithm, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
    """Request bytes to response bytes; raises UserError (with its HTTP status) for bad requests."""
    answered = model.respond(body, content_type, accept)
    if answered is not None:
        return answered
    reader = _request_reader(content_type, model.request_types)
    default = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or model.default_accept
    response_type = _response_type(accept, model.response_types, default)
    if not body.strip():
        raise UserError("The request body is empty; send at least one row.")
    batch = reader.parse(body)
    if len(batch) == 0:
        raise UserError("The request body holds no rows.")
    batch.check_finite(missing_ok=model.handles_missing_values)
    columns = model.predict(batch, response_type)
    return model.encode(columns, response_type), response_type.name


@functools.lru_cache(maxsize=64)
def _request_reader(content_type: str | None, supported: tuple[str, ...]) -> Reader:
    """Readers are stateless, so one per Content-Type string serves every request that sends it."""
    if not content_type:
        raise UnsupportedContentType(
            "The request has no Content-Type; use one of: " + ", ".join(supported) + ".")
    media = MediaType.parse(content_type)
    if media.name not in supported:
        raise UnsupportedContentType(
            f"Content-Type '{content_type}' is not supported; use one of: {', '.join(supported)}.")
    return reader_for(media, labelled=False)


@functools.lru_cache(maxsize=64)
def _response_type(accept: str | None, supported: tuple[str, ...], default: str) -> MediaType:
    return negotiate_accept(accept, supported, default)


def create_app(algorithm: type[Algorithm], model_dir: Path, concurrent_predictions: int | None = None) -> Flask:
    """`concurrent_predictions` caps how many requests predict at once (None: no cap); the server reads
    requests on more threads than that, so that slow uploads do not hold up the compute."""
    app = Flask(algorithm.name)
    limit = max_payload_bytes()  # enforced by _read_body, chunked bodies included
    predicting: contextlib.AbstractContextManager = (
        threading.BoundedSemaphore(concurrent_predictions) if concurrent_predictions else contextlib.nullcontext())
    model: Algorithm | None = None
    load_error = ""
    try:
        model = algorithm.load(model_dir)
        model.warm_up()
        log.info("Loaded the %s model from %s.", algorithm.name, model_dir)
    except UserError as exc:
        load_error = exc.message
    except Exception:  # noqa: BLE001 - reported on /ping, server stays up
        log.error("Could not load the model:\n%s", traceback.format_exc())
        load_error = "The model could not be loaded; see the log."
    if load_error:
        log.error("Model not loaded: %s", load_error)
    # Everything loaded so far lives as long as the worker: keep the garbage collector off it,
    # so collections during requests stay short.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)  # a request allocates little that cycles: collect rarely

    @app.get("/ping")
    def ping() -> Response:
        if model is None:
            return Response(load_error + "\n", status=500, mimetype=TEXT)
        return Response("", status=200)

    @app.get("/execution-parameters")
    def execution_parameters() -> dict:
        return {
            "MaxConcurrentTransforms": os.cpu_count() or 1,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": limit >> 20,
        }

    def invocations(environ: dict, start_response: Callable) -> list[bytes]:
        """POST /invocations as a plain WSGI function: Flask's request machinery costs more than a
        one-row prediction (bench/bench_serving.py), and this path needs none of it."""
        if model is None:
            status, payload, mimetype = 503, f"The model is not loaded: {load_error}\n".encode(), TEXT
        else:
            try:
                body = _read_body(environ, limit)
                if model.empty_body_status is not None and (not body or body.isspace()):
                    start_response(f"{model.empty_body_status} {HTTPStatus(model.empty_body_status).phrase}", [])
                    return []
                with predicting:
                    payload, mimetype = invoke(model, body, environ.get("CONTENT_TYPE"), environ.get("HTTP_ACCEPT"))
                status = 200
            except UserError as exc:
                status, payload, mimetype = exc.status, (exc.message + "\n").encode(), TEXT
            except Exception:  # noqa: BLE001 - a request never kills the server
                log.error("Request failed:\n%s", traceback.format_exc())
                status, payload, mimetype = 500, b"Internal error while predicting; see the log.\n", TEXT
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       [("Content-Type", mimetype), ("Content-Length", str(len(payload)))])
        return [payload]

    flask_app = app.wsgi_app

    def route(environ: dict, start_response: Callable) -> Any:
        if environ.get("PATH_INFO") == "/invocations" and environ.get("REQUEST_METHOD") == "POST":
            return invocations(environ, start_response)
        return flask_app(environ, start_response)

    app.wsgi_app = route  # type: ignore[method-assign]
    return app


def _read_body(environ: dict, limit: int) -> bytes:
    """The whole body, chunked or not, refusing more than `limit` bytes without buffering them.

    Reads the server's input stream directly (gunicorn de-chunks it and ends it at the body's end):
    werkzeug's stream wrappers cost more than the rest of a one-row request. A body that does not arrive in
    time (the server raises TimeoutError from the stream, see common/gthread_worker.py) is a 408."""
    try:
        return _read_limited(environ["wsgi.input"], environ.get("CONTENT_LENGTH"), limit)
    except TimeoutError as exc:
        raise UserError(str(exc) or "The request body did not arrive in time.", status=408) from None


def _read_limited(stream: Any, length: str | None, limit: int) -> bytes:
    if length and length.isdigit():
        if int(length) > limit:
            raise _too_large(limit)
        return stream.read(int(length))
    chunks, total = [], 0
    while True:
        chunk = stream.read(min(1 << 20, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than {limit >> 20} MB; raise SAGEMAKER_MAX_PAYLOAD_IN_MB or send less.")


__all__ = ["create_app", "invoke", "ct"]
