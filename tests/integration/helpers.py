"""Run the real entrypoint in subprocesses: train, serve (gunicorn), several hosts."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests

from tools.local import entrypoint_env, run_entrypoint, stop_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports, below the kernel's ephemeral range (32768 and up), so no
    other test's free_port() or client connection can take one of them between this check and the bind.
    LightGBM's network needs such a run: host i listens on the first port + i."""
    for _ in range(200):
        first = random.randrange(20000, 32000 - count)
        try:
            with ExitStack() as stack:
                for port in range(first, first + count):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no run of {count} free ports between 20000 and 32000")


def train(algorithm: str, base: Path, extra_env: dict[str, str] | None = None,
          timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.entrypoint", "train"],
                          env=entrypoint_env(algorithm, base, extra_env), capture_output=True, text=True,
                          timeout=timeout)


def cluster_env(hosts: list[str], **extra: str) -> dict[str, str]:
    """What every host's entrypoint needs to form one cluster on this machine: all hosts at 127.0.0.1 and a
    free port for the collective. `extra` adds to it (ALGO_LIGHTGBM_PORT=..., OMP_NUM_THREADS="1")."""
    return {"ALGO_HOST_ADDRESSES": json.dumps({host: "127.0.0.1" for host in hosts}),
            "ALGO_COLLECTIVE_PORT": str(free_port()), "ALGO_COLLECTIVE_TIMEOUT": "60", **extra}


def train_hosts(algorithm: str, bases: list[Path], hosts: list[str], extra_env: dict[str, str] | None = None,
                timeout: float = 180) -> list[subprocess.CompletedProcess]:
    """Train on every host at once, one entrypoint each (bases[i] holds hosts[i]'s job, written with
    write_job(..., host=hosts[i], hosts=hosts)), as one cluster; each host's output is its stdout and stderr."""
    env = cluster_env(hosts, **(extra_env or {}))
    processes = [subprocess.Popen([sys.executable, "-m", "common.entrypoint", "train"],
                                  env=entrypoint_env(algorithm, base, env), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for base in bases]
    try:
        outputs = [process.communicate(timeout=timeout)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [subprocess.CompletedProcess(process.args, process.returncode, output)
            for process, output in zip(processes, outputs)]


@contextmanager
def serving(algorithm: str, base: Path, workers: int = 1, extra_env: dict[str, str] | None = None):
    port = free_port()
    env = {"SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), **(extra_env or {})}
    server = run_entrypoint("serve", algorithm, base, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a cold numba cache compiles the model's kernels first (warm_up)
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
        stop_server(server)
