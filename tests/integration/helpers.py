"""Run the real entrypoint in subprocesses: train, serve (gunicorn), several hosts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from common.local import entrypoint_env, run_entrypoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(algorithm: str, base: Path, extra_env: dict[str, str] | None = None,
          timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.entrypoint", "train"],
                          env=entrypoint_env(algorithm, base, extra_env), capture_output=True, text=True,
                          timeout=timeout)


@contextmanager
def serving(algorithm: str, base: Path, workers: int = 1, extra_env: dict[str, str] | None = None):
    port = free_port()
    env = {"SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), **(extra_env or {})}
    server = run_entrypoint("serve", algorithm, base, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise AssertionError("server exited: " + server.stdout.read().decode())
            try:
                if requests.get(url + "/ping", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server never became ready")
            time.sleep(0.1)
        yield url, server
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
