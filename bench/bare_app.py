"""The serving anchor: a bare Flask app that returns fixed bytes (run under gunicorn like ours)."""

from __future__ import annotations

import os

from flask import Flask, Response, request

app = Flask("bare")
BODY = os.environ.get("BARE_RESPONSE", "").encode()


@app.post("/invocations")
def invocations() -> Response:
    request.get_data()
    return Response(BODY, mimetype="application/json")


@app.get("/ping")
def ping() -> Response:
    return Response("", status=200)
