"""An inference pipeline, run locally: two to fifteen containers behind one endpoint, each request through
every container in turn, as SageMaker runs a model made of `Containers`.

    sm-local pipeline --container pca=build/pca/model --container kmeans=build/kmeans/model \\
        --env 1:SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT=text/csv [--port 8080 | --request rows.csv --content-type text/csv]

The request's Content-Type goes to container 1 and each answer's Content-Type becomes the next request's.
The caller's Accept goes to the last container only: an earlier one answers its default type, so set
SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT in its environment to choose (here PCA's text/csv, which k-means
reads). An error from container N ends the request with that status and "Received client error (415) from
container-2 with message ...". `sm-local transform --container ...` runs a batch transform through one.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tools.model_server import Answer, ModelServer, ServerError
from tools.transform import run_job
from tools.transform_job import TransformError, TransformJob, TransformResult, input_files

MAX_CONTAINERS = 15
_ENV_ITEM = re.compile(r"(?:(\d+):)?([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.S)


@dataclass(frozen=True)
class Container:
    algorithm: str
    model_dir: Path
    environment: dict[str, str] = field(default_factory=dict)


class Pipeline:
    """`with Pipeline([Container("pca", a), Container("kmeans", b)]) as p: p.invoke(body, "text/csv")`."""

    def __init__(self, containers: list[Container]) -> None:
        if not 1 <= len(containers) <= MAX_CONTAINERS:
            raise ServerError(f"a pipeline holds 1 to {MAX_CONTAINERS} containers, got {len(containers)}")
        self.servers = [ModelServer(c.algorithm, c.model_dir, c.environment, name=f"container-{i} ({c.algorithm})")
                        for i, c in enumerate(containers, start=1)]

    def __enter__(self) -> Pipeline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """All containers at once (each start is mostly waiting on imports)."""
        with ThreadPoolExecutor(len(self.servers)) as pool:
            failures = [f.exception() for f in [pool.submit(s.start) for s in self.servers]]
        errors = [error for error in failures if error is not None]
        if errors:
            self.stop()
            raise errors[0]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def invoke(self, body: bytes, content_type: str | None, accept: str | None = None) -> Answer:
        answer = Answer(200, body, content_type)
        for number, server in enumerate(self.servers, start=1):
            last = number == len(self.servers)
            answer = server.invoke(answer.body, answer.content_type, accept if last else None)
            if answer.status not in (200, 204):
                kind = "client" if answer.status < 500 else "server"
                message = answer.body.decode("utf-8", "replace").strip()
                text = f"Received {kind} error ({answer.status}) from container-{number} with message \"{message}\""
                return Answer(answer.status, text.encode(), "text/plain; charset=utf-8")
            if answer.status == 204 and not last:
                return answer  # nothing for the next container to read
        return answer

    def execution_parameters(self) -> dict:
        """The tightest of the containers': every mini-batch passes through each of them."""
        answers = [server.execution_parameters() for server in self.servers]
        combined: dict = {}
        for key in ("MaxConcurrentTransforms", "MaxPayloadInMB"):
            values = [a[key] for a in answers if isinstance(a.get(key), int) and a[key] > 0]
            if values:
                combined[key] = min(values)
        strategies = {a.get("BatchStrategy") for a in answers if a.get("BatchStrategy")}
        if strategies:
            combined["BatchStrategy"] = "SINGLE_RECORD" if "SINGLE_RECORD" in strategies else "MULTI_RECORD"
        return combined

    def ping(self) -> bool:
        try:
            return all(server.get("/ping", timeout=2).status == 200 for server in self.servers)
        except OSError:
            return False


def run_pipeline_transform(containers: list[Container], input_dir: Path, output_dir: Path,
                           **settings: object) -> TransformResult:
    """`run_transform` through a pipeline: the same settings, each container given the job's batch variables."""
    environment = settings.pop("environment", None) or {}
    job = TransformJob(**settings, environment=dict(environment))  # type: ignore[arg-type]
    job.check()
    files = input_files(Path(input_dir), Path(output_dir))
    batch_env = job.container_environment()
    containers = [replace(c, environment={**batch_env, **c.environment}) for c in containers]
    try:
        with Pipeline(containers) as pipeline:
            return run_job(pipeline, job, files, Path(output_dir))
    except ServerError as exc:
        raise TransformError(str(exc)) from None


# ---- the pipeline's own endpoint ------------------------------------------------------------------------

def serve_pipeline(pipeline: Pipeline, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """A front for the pipeline on `port`: /ping, /invocations and /execution-parameters, as its endpoint."""

    class Front(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/ping":
                self._send(200 if pipeline.ping() else 500, b"", None)
            elif self.path == "/execution-parameters":
                self._send(200, json.dumps(pipeline.execution_parameters()).encode(), "application/json")
            else:
                self._send(404, b"Not found\n", "text/plain")

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != "/invocations":
                self._send(404, b"Not found\n", "text/plain")
                return
            try:
                answer = pipeline.invoke(body, self.headers.get("Content-Type"), self.headers.get("Accept"))
            except OSError as exc:
                self._send(502, f"A container did not answer: {exc}\n".encode(), "text/plain")
                return
            self._send(answer.status, answer.body, answer.content_type)

        def _send(self, status: int, body: bytes, content_type: str | None) -> None:
            self.send_response(status, HTTPStatus(status).phrase)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            pass

    return ThreadingHTTPServer((host, port), Front)


# ---- sm-local pipeline ------------------------------------------------------------------------------------

def parse_containers(specs: list[str]) -> list[Container]:
    from tools.local import UsageError

    containers = []
    for spec in specs:
        algorithm, separator, folder = spec.partition("=")
        if not separator or not algorithm or not folder:
            raise UsageError(f"--container takes ALGORITHM=MODEL_DIR, got {spec!r}")
        containers.append(Container(algorithm, Path(folder)))
    return containers


def environments(items: list[str], count: int) -> tuple[dict[str, str], list[dict[str, str]]]:
    """--env KEY=VALUE (every container) and --env N:KEY=VALUE (container N, 1-based)."""
    from tools.local import UsageError

    shared: dict[str, str] = {}
    each: list[dict[str, str]] = [{} for _ in range(count)]
    for item in items:
        match = _ENV_ITEM.fullmatch(item)
        if not match:
            raise UsageError(f"--env takes KEY=VALUE or N:KEY=VALUE, got {item!r}")
        number, key, value = match.groups()
        if number is None:
            shared[key] = value
        elif 1 <= int(number) <= count:
            each[int(number) - 1][key] = value
        else:
            raise UsageError(f"--env {item}: there is no container {number} (containers 1 to {count})")
    return shared, each


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "pipeline", help="serve an inference pipeline of several containers, or send it one request",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--container", action="append", required=True, metavar="ALGORITHM=MODEL_DIR",
                        help="a container, in order (two or more)")
    parser.add_argument("--env", action="append", default=[], metavar="[N:]KEY=VALUE",
                        help="an environment variable of every container, or of container N (1-based)")
    parser.add_argument("--port", type=int, default=8080, help="where the pipeline's endpoint listens")
    parser.add_argument("--request", type=Path, help="send this file as one request, print the answer, stop")
    parser.add_argument("--content-type", help="with --request: its Content-Type")
    parser.add_argument("--accept", help="with --request: its Accept")
    parser.set_defaults(run=command)


def command(args: argparse.Namespace) -> int:
    containers = parse_containers(args.container)
    shared, each = environments(args.env, len(containers))
    containers = [replace(c, environment={**shared, **env}) for c, env in zip(containers, each)]
    try:
        with Pipeline(containers) as pipeline:
            if args.request is not None:
                answer = pipeline.invoke(args.request.read_bytes(), args.content_type, args.accept)
                sys.stdout.buffer.write(answer.body)
                sys.stdout.flush()
                if answer.status not in (200, 204):
                    print(f"\nsm-local pipeline: {answer.status}", file=sys.stderr)
                    return 1
                return 0
            return _serve(pipeline, args.port)
    except ServerError as exc:
        print(f"sm-local pipeline: {exc}", file=sys.stderr)
        return 1


def _serve(pipeline: Pipeline, port: int) -> int:
    front = serve_pipeline(pipeline, port)
    stopped = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopped.set()
        threading.Thread(target=front.shutdown, daemon=True).start()

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    names = " -> ".join(server.name for server in pipeline.servers)
    print(f"sm-local pipeline: {names} on port {port} (/ping, /invocations, /execution-parameters); Ctrl-C stops",
          file=sys.stderr)
    try:
        front.serve_forever()
    finally:
        front.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 130 if stopped.is_set() else 0
