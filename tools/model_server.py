"""One model's real server, started for a local batch transform or inference pipeline and stopped after it.

`ModelServer` runs `python -m common.entrypoint serve` (gunicorn, exactly as the image's ENTRYPOINT) on a
free port over a throwaway /opt/ml whose model/ is a link to the model folder, waits for /ping, and posts
requests on one keep-alive connection per calling thread.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tools.local import run_entrypoint, stop_server

START_SECONDS = 120  # a cold start of every worker, numba caches included, on a loaded machine
INVOKE_SECONDS = 600  # how long batch transform waits for one /invocations answer


class ServerError(Exception):
    """The server did not start, or its model did not load."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str | None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise ServerError(f"{model_dir}: no such model folder (train first: sm-local train, or untar model.tar.gz)")
    if not any(model_dir.iterdir()):
        raise ServerError(f"{model_dir} is empty: it holds no model (train into it first: sm-local train)")


class ModelServer:
    """`with ModelServer("kmeans", Path("job/model")) as server: server.invoke(body, "text/csv")`."""

    def __init__(self, algorithm: str, model_dir: Path, environment: dict[str, str] | None = None,
                 name: str | None = None) -> None:
        self.algorithm, self.model_dir = algorithm, Path(model_dir)
        self.environment = dict(environment or {})
        self.name = name or algorithm
        self.port = 0
        self._process: subprocess.Popen | None = None
        self._base: Path | None = None
        self._log: Path | None = None
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._connections_lock = threading.Lock()

    def __enter__(self) -> ModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        check_model_dir(self.model_dir)
        self._base = Path(tempfile.mkdtemp(prefix=f"sm-{self.algorithm}-"))
        (self._base / "model").symlink_to(self.model_dir.resolve(), target_is_directory=True)
        self._log = self._base / "server.log"
        self.port = free_port()
        env = {**self.environment, "SAGEMAKER_BIND_TO_PORT": str(self.port)}
        with open(self._log, "wb") as log:
            self._process = run_entrypoint("serve", self.algorithm, self._base, env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self._process.poll() is not None:
                raise ServerError(f"the {self.name} server exited ({self._process.returncode}):\n{self.log_tail()}")
            try:
                answer = self.get("/ping", timeout=2)
            except OSError:
                answer = None
            if answer is not None and answer.status == 200:
                return
            if answer is not None and answer.status >= 500:
                reason = answer.body.decode(errors="replace").strip()
                raise ServerError(f"the {self.name} model in {self.model_dir} did not load: {reason}")
            if time.monotonic() > deadline:
                raise ServerError(f"the {self.name} server did not answer /ping within {START_SECONDS} s:\n"
                                  f"{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, gunicorn's graceful stop; SIGKILL after its 25 s graceful timeout and a margin."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:  # idle keep-alive connections would hold up gunicorn's graceful stop
            connection.close()
        process, self._process = self._process, None
        if process is not None:
            stop_server(process)
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    def log_tail(self, lines: int = 30) -> str:
        if self._log is None or not self._log.exists():
            return ""
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def execution_parameters(self) -> dict:
        """GET /execution-parameters, as the transform agent asks before its first request; {} if absent."""
        answer = self.get("/execution-parameters")
        if answer.status != 200:
            return {}
        try:
            parameters = json.loads(answer.body)
        except ValueError:
            return {}
        return parameters if isinstance(parameters, dict) else {}

    def get(self, path: str, timeout: float = 10) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return Answer(response.status, response.read(), response.getheader("Content-Type"))
        finally:
            connection.close()

    def invoke(self, body: bytes, content_type: str | None, accept: str | None = None) -> Answer:
        """POST /invocations on this thread's connection (reconnecting once if the server closed it)."""
        headers = {"Content-Length": str(len(body))}
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request("POST", "/invocations", body=body, headers=headers)
                response = connection.getresponse()
                answer = Answer(response.status, response.read(), response.getheader("Content-Type"))
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop_connection()
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self._drop_connection()
            return answer
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=INVOKE_SECONDS)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
