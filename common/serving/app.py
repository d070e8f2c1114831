"""The HTTP contract: a Flask app factory over one `Endpoint` (docs/contract.md, "Serving").

`create_app` loads the model once, in the calling process (a gunicorn worker, after the fork). The request
path itself (negotiation, readers, checks, predict, writers) is `common/serving/endpoint.py`. With
SAGEMAKER_MULTI_MODEL=true there is no model at start: the /models routes load, list, describe, unload and
invoke models by name (`common/serving/models.py`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import threading
import traceback
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from common.algorithm import Algorithm
from common.errors import NoContent, PayloadTooLarge, UserError
from common.serving.endpoint import Endpoint, as_endpoint, load_endpoint, warm_up_request
from common.serving.memory import Limits
from common.serving.model_set import Record, Registry
from common.serving.models import Models, multi_model_enabled, page_limit, parse_load_request

log = logging.getLogger(__name__)
TEXT = "text/plain; charset=utf-8"
MODELS_PREFIX, INVOKE_SUFFIX = "/models/", "/invoke"
DEFAULT_PAYLOAD_MB = 6


def max_payload_bytes() -> int:
    configured = os.environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "")
    megabytes = int(configured) if configured.isdigit() else DEFAULT_PAYLOAD_MB
    return max(DEFAULT_PAYLOAD_MB, megabytes) << 20


def invoke(model: Algorithm | Endpoint, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
    """Request bytes to response bytes, as /invocations answers; raises UserError for bad requests."""
    return as_endpoint(model).answer(body, content_type, accept)


def create_app(algorithm: type[Algorithm], model_dir: Path, concurrent_predictions: int | None = None,
               registry: Registry | None = None, workers: int = 1) -> Flask:
    """`concurrent_predictions` caps how many requests predict at once (None: no cap); the server reads
    requests on more threads than that, so that slow uploads do not hold up the compute.

    A multi-model endpoint's `registry` is the loaded set its `workers` share (a fresh one when None)."""
    app = Flask(algorithm.name)
    limit = max_payload_bytes()  # enforced by _read_body, chunked bodies included
    predicting: contextlib.AbstractContextManager = (
        threading.BoundedSemaphore(concurrent_predictions) if concurrent_predictions else contextlib.nullcontext())
    model: Endpoint | None = None
    models: Models | None = None
    load_error = ""
    if multi_model_enabled():
        models = Models(algorithm, registry or Registry.create(), Limits.from_env(workers))
        models.start_sweeping()
        _add_model_routes(app, models, limit)
    else:
        model, load_error = _load_model(algorithm, model_dir)
    app.config["WARM_UP_REQUESTS"] = _warm_up_requests(model)
    # Everything loaded so far lives as long as the worker: keep the garbage collector off it,
    # so collections during requests stay short.
    gc.freeze()
    # Rarely in the middle of a request (a big body's parse allocates many objects); the server's worker collects
    # what a request left between requests, a little at a time (common/serving/worker.py).
    gc.set_threshold(50_000, 20, 20)

    @app.get("/ping")
    def ping() -> Response:
        if model is None and models is None:
            return Response(load_error + "\n", status=500, mimetype=TEXT)
        return Response("", status=200)

    @app.get("/execution-parameters")
    def execution_parameters() -> dict:
        return {
            "MaxConcurrentTransforms": os.cpu_count() or 1,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": limit >> 20,
        }

    def predict(environ: dict, endpoint: Endpoint, body: bytes) -> tuple[bytes, str]:
        with predicting:
            return endpoint.answer(body, environ.get("CONTENT_TYPE"), environ.get("HTTP_ACCEPT"))

    def invocations(environ: dict, start_response: Callable) -> list[bytes]:
        """POST /invocations as a plain WSGI function: Flask's request machinery costs more than a
        one-row prediction (bench/bench_serving.py), and this path needs none of it."""
        def answer() -> tuple[bytes, str]:
            if models is not None:
                raise UserError("This is a multi-model endpoint (SAGEMAKER_MULTI_MODEL=true): invoke a model "
                                "with POST /models/<model_name>/invoke.", status=404)
            if model is None:
                raise UserError(f"The model is not loaded: {load_error}", status=503)
            return predict(environ, model, _read_body(environ, limit))

        return _respond(start_response, answer)

    def invoke_model(environ: dict, start_response: Callable, name: str) -> list[bytes]:
        """POST /models/<name>/invoke: the same bodies and answers as /invocations, from the named model."""
        target = environ.get("HTTP_X_AMZN_SAGEMAKER_TARGET_MODEL")
        if target:
            log.debug("Invoking model %s for the target model %s.", name, target)

        def answer() -> tuple[bytes, str]:
            body = _read_body(environ, limit)  # first: a model loading in this worker must not hold up the upload
            return predict(environ, models.endpoint(name), body)  # type: ignore[union-attr]

        return _respond(start_response, answer)

    flask_app = app.wsgi_app

    def route(environ: dict, start_response: Callable) -> Any:
        if environ.get("PATH_INFO") == "/invocations" and environ.get("REQUEST_METHOD") == "POST":
            return invocations(environ, start_response)
        if models is not None and environ.get("REQUEST_METHOD") == "POST":
            path = environ.get("PATH_INFO", "")
            if path.startswith(MODELS_PREFIX) and path.endswith(INVOKE_SUFFIX):
                return invoke_model(environ, start_response, _wsgi_text(path[len(MODELS_PREFIX):-len(INVOKE_SUFFIX)]))
        return flask_app(environ, start_response)

    app.wsgi_app = route  # type: ignore[method-assign]
    return app


def _load_model(algorithm: type[Algorithm], model_dir: Path) -> tuple[Endpoint | None, str]:
    """The model, or None and why not (reported on /ping: the server stays up)."""
    try:
        model = load_endpoint(algorithm, model_dir)
        model.warm_up()
        log.info("Loaded the %s model from %s.", algorithm.name, model_dir)
        return model, ""
    except UserError as exc:
        load_error = exc.message
    except Exception:  # noqa: BLE001 - reported on /ping, server stays up
        log.error("Could not load the model:\n%s", traceback.format_exc())
        load_error = "The model could not be loaded; see the log."
    log.error("Model not loaded: %s", load_error)
    return None, load_error


def _warm_up_requests(model: Endpoint | None) -> list[bytes]:
    """The requests each worker serves itself before it accepts a client (common/serving/worker.py): a ping, and
    an invocation where a built-in model is loaded."""
    heads = [b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"]
    found = warm_up_request(model) if model is not None else None
    if found is not None:
        content_type, body = found
        heads.append(b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (content_type.encode(), len(body), body))
    return heads


def _respond(start_response: Callable, answer: Callable[[], tuple[bytes, str]]) -> list[bytes]:
    """`answer`'s (body, Content-Type) as a 200, or its error as a plain-text one; a request never kills the
    server."""
    try:
        payload, mimetype = answer()
        status = 200
    except NoContent as exc:
        start_response(f"{exc.status} {HTTPStatus(exc.status).phrase}", [])
        return []
    except UserError as exc:
        status, payload, mimetype = exc.status, (exc.message + "\n").encode(), TEXT
    except Exception:  # noqa: BLE001 - a request never kills the server
        log.error("Request failed:\n%s", traceback.format_exc())
        status, payload, mimetype = 500, b"Internal error while predicting; see the log.\n", TEXT
    start_response(f"{status} {HTTPStatus(status).phrase}",
                   [("Content-Type", mimetype), ("Content-Length", str(len(payload)))])
    return [payload]


def _add_model_routes(app: Flask, models: Models, limit: int) -> None:
    """Load, list, describe and unload: JSON in and out, errors as {"code", "message"}."""

    @app.post("/models")
    def load_model() -> Response:
        name, url = parse_load_request(_read_body(request.environ, limit))
        models.load(name, url)
        return _json({"status": f"Model {name} loaded."})

    @app.get("/models")
    def list_models() -> Response:
        page, token = models.page(request.args.get("next_page_token"), page_limit(request.args.get("limit")))
        listing: dict[str, Any] = {"models": [_description(record) for record in page]}
        if token is not None:
            listing["nextPageToken"] = token
        return _json(listing)

    @app.get("/models/<path:name>")
    def describe_model(name: str) -> Response:
        return _json(_description(models.describe(name)))

    @app.delete("/models/<path:name>")
    def unload_model(name: str) -> Response:
        models.unload(name)
        return _json({"status": f"Model {name} unloaded."})

    @app.errorhandler(UserError)
    def user_error(exc: UserError) -> Response:
        return _json({"code": exc.status, "message": exc.message}, exc.status)

    @app.errorhandler(Exception)
    def failure(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):
            return exc
        log.error("Request failed:\n%s", traceback.format_exc())
        return _json({"code": 500, "message": "Internal error; see the log."}, 500)


def _description(record: Record) -> dict[str, str]:
    return {"modelName": record.name, "modelUrl": record.url}


def _json(content: dict, status: int = 200) -> Response:
    return Response(json.dumps(content), status=status, mimetype="application/json")


def _wsgi_text(path: str) -> str:
    """PATH_INFO carries the URL's bytes as latin-1; a model name is UTF-8."""
    return path.encode("latin-1").decode("utf-8", "replace")


def _read_body(environ: dict, limit: int) -> bytes:
    """The whole body, chunked or not, refusing more than `limit` bytes without buffering them.

    Reads the server's input stream directly (gunicorn de-chunks it and ends it at the body's end):
    werkzeug's stream wrappers cost more than the rest of a one-row request. A body that does not arrive in
    time (the server raises TimeoutError from the stream, see common/serving/worker.py) is a 408."""
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


__all__ = ["create_app", "invoke"]
