"""Serving overhead: 1-row CSV -> k-means -> JSON through our server vs a bare Flask+gunicorn app.

Both run under gunicorn (1 worker, gthread) at the same time; the client is one keep-alive
connection sending requests back to back, alternating between the two servers run by run;
p50/p99 latency and requests/s, medians over the runs.
Usage: bench_serving.py [--requests N] [--rounds R]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import REPO, free_port, report
from results import Results, add_option

from algorithms.kmeans.algorithm import KMeans

ROW = b"0.5,1.25,-3.0,2.0,0.0,1.0,7.5,-0.25"


def _wait(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def _load(port: int, requests: int = 3000) -> tuple[float, float, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "text/csv", "Accept": "application/json"}
    latencies = []
    started = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        connection.request("POST", "/invocations", body=ROW, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return latencies[len(latencies) // 2] * 1e3, latencies[int(len(latencies) * 0.99)] * 1e3, requests / elapsed


def _start(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen:
    server = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(port)
    _load(port)  # warm-up
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--requests", "3000", kind=int, help="requests per run")
    add_option(parser, "--rounds", "5", "3", kind=int, help="alternating runs per server")
    args = parser.parse_args()
    results = Results("serving", ("flask", "gunicorn"), **vars(args))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "model").mkdir()
        KMeans(np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)).save(base / "model")
        env = dict(os.environ, PYTHONPATH=str(REPO), ALGORITHM="kmeans", SAGEMAKER_BASE_DIR=str(base),
                   SAGEMAKER_MODEL_SERVER_WORKERS="1")
        port, bare_port = free_port(), free_port()
        servers = [_start([sys.executable, "-m", "common.entrypoint", "serve"],
                          dict(env, SAGEMAKER_BIND_TO_PORT=str(port)), port)]
        try:
            bare_env = dict(env, BARE_RESPONSE=_our_response(base), OMP_NUM_THREADS="2")
            servers.append(_start([sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "4",
                                   "-b", f"127.0.0.1:{bare_port}", "--chdir", str(REPO / "bench"), "bare_app:app"],
                                  bare_env, bare_port))
            runs: dict[int, list[tuple[float, float, float]]] = {port: [], bare_port: []}
            for _ in range(args.rounds):  # alternate, so a change in machine load hits both alike
                for target in runs:
                    runs[target].append(_load(target, args.requests))
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
    ours, bare = ([statistics.median(r[i] for r in runs[p]) for i in range(3)] for p in (port, bare_port))
    report(f"serving 1-row CSV -> JSON, {args.requests} sequential keep-alive requests x {args.rounds} "
           "alternating runs (median)", [
        ("ours  p50 / p99 / req/s", f"{ours[0]:.2f} ms / {ours[1]:.2f} ms / {ours[2]:.0f}"),
        ("bare Flask+gunicorn p50 / p99 / req/s", f"{bare[0]:.2f} ms / {bare[1]:.2f} ms / {bare[2]:.0f}"),
        ("throughput ratio ours/bare", f"{ours[2] / bare[2]:.2f}x"),
    ])
    size = {"data": "1-row CSV requests, k-means model", "rows": 1, "cols": 8}
    results.add("common", "serve 1-row CSV -> JSON: requests/s", **size, ours=ours[2], unit="req/s",
                anchor="bare Flask + gunicorn, fixed answer", anchor_value=bare[2])
    results.add("common", "serve 1-row CSV -> JSON: p50 latency", **size, ours=ours[0], unit="ms",
                anchor="bare Flask + gunicorn, fixed answer", anchor_value=bare[0])


def _our_response(base: Path) -> str:
    from common.serving.app import invoke

    model = KMeans.load(base / "model")
    return invoke(model, ROW, "text/csv", "application/json")[0].decode()


if __name__ == "__main__":
    main()
