"""Latency tail: 1-row requests, one keep-alive client, every image's real server.

Per image: a tiny training job (1,000 rows x 10) through the real entrypoint, then `serve` with one worker on
that model; one keep-alive http.client connection sends --warmup requests, then --requests 1-row requests back to
back in the image's natural request type (CSV; fm takes no CSV: JSON). Latency p50, p90, p99 and max, requests/s
and p99/p50, medians of --rounds rounds. Each round alternates with the same requests to the anchor, a bare
gunicorn + Flask app answering a fixed body (bench/bare_app.py), so the machine's own tail shows next to ours,
and with no server at all: the same count of a fixed pure-Python loop of about 0.15 ms ("fixed work"), the
machine's jitter alone. The load average is read at each image and each round. --baseline DIR also serves the
model from another copy of the repository (the code before a change), alternating in the same rounds.
Usage: bench_latency.py [--requests N] [--warmup N] [--rounds R] [--images kmeans,...] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_startup import COLS, clean, jobs, tree_env
from benchlib import REPO, free_port
from results import Results, add_option

from tools.local import stop_server, write_job

IMAGES = "kmeans,pca,knn,rcf,fm,xgboost,lightgbm,catboost"
FIGURES = ("p50", "p90", "p99", "max", "req/s")


def request_body(image: str) -> tuple[str, bytes]:
    """(Content-Type, body) of one row, as a client would send it."""
    row = np.random.default_rng(1).standard_normal(COLS).round(4).tolist()
    if image == "fm":
        return "application/json", json.dumps({"instances": [{"features": row}]}).encode()
    return "text/csv", (",".join(map(repr, row)) + "\n").encode()


def _wait(port: int, server: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"{name} server exited:\n{server.stderr.read().decode()[-3000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{name} server never answered /ping")


def _start(command: list[str], env: dict[str, str], port: int, cwd: Path, name: str) -> subprocess.Popen:
    server = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait(port, server, name)
    except BaseException:
        stop_server(server)
        raise
    server.stderr.close()  # nothing reads it from here on; a full pipe must not block the server
    return server


def load(port: int, content_type: str, body: bytes, requests: int, warmup: int) -> dict[str, float]:
    """One round on a fresh keep-alive connection: latencies in ms of each request sent and answered in full."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": content_type}
    latencies = []
    clock = time.perf_counter
    for i in range(warmup + requests):
        started = clock()
        connection.request("POST", "/invocations", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if i >= warmup:
            latencies.append(clock() - started)
        if response.status != 200:
            raise SystemExit(f"port {port} answered {response.status}")
    connection.close()
    return _figures(latencies)


def fixed_work(requests: int, warmup: int) -> dict[str, float]:
    """The machine's own jitter, no server: the same pure-Python loop (about 0.15 ms) timed `requests` times."""
    def work() -> int:
        return sum(i * i for i in range(4000))

    latencies = []
    for i in range(warmup + requests):
        started = time.perf_counter()
        work()
        if i >= warmup:
            latencies.append(time.perf_counter() - started)
    return _figures(latencies)


def _figures(latencies: list[float]) -> dict[str, float]:
    latencies.sort()
    ms = [value * 1e3 for value in latencies]
    return {"p50": ms[len(ms) // 2], "p90": ms[int(len(ms) * 0.9)], "p99": ms[int(len(ms) * 0.99)],
            "max": ms[-1], "req/s": len(ms) / sum(latencies), "load": os.getloadavg()[0]}


def train(image: str, folder: Path) -> Path:
    _, hyperparameters, channels = jobs(1000)[image]
    base = folder / "ml"
    write_job(base, hyperparameters, channels(folder))
    clean(base)
    done = subprocess.run([sys.executable, "-m", "common.entrypoint", "train"], env=tree_env(image, base, REPO),
                          cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise SystemExit(f"{image} training failed:\n{done.stderr.decode()[-3000:]}")
    return base


def median_figures(rounds: list[dict[str, float]]) -> dict[str, float | list[float]]:
    figures: dict[str, float | list[float]] = {name: statistics.median(r[name] for r in rounds) for name in FIGURES}
    figures["p99/p50"] = statistics.median(r["p99"] / r["p50"] for r in rounds)
    figures["rounds p99/p50"] = [round(r["p99"] / r["p50"], 2) for r in rounds]
    figures["rounds load"] = [round(r["load"], 2) for r in rounds]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--requests", "3000", "1000", kind=int, help="timed requests per round")
    add_option(parser, "--warmup", "200", kind=int, help="untimed requests first, on the same connection")
    add_option(parser, "--rounds", "3", kind=int, help="alternating rounds per server (median)")
    add_option(parser, "--images", IMAGES, kind=lambda text: [name for name in text.split(",") if name],
               help="images to measure")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another copy of the repository (e.g. before a change), served alternating with this one")
    args = parser.parse_args()
    results = Results("latency", ("gunicorn", "flask", "werkzeug"),
                      **{**vars(args), "baseline": str(args.baseline or "")})
    trees = {"ours": REPO, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    bare_port = free_port()
    bare = _start([sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "4",
                   "-b", f"127.0.0.1:{bare_port}", "--chdir", str(REPO / "bench"), "bare_app:app"],
                  dict(os.environ, BARE_RESPONSE='{"predictions": [{"score": 0.5}]}'), bare_port, REPO, "bare")
    measured: dict[str, dict[str, dict[str, float]]] = {}
    loads: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for image in args.images:
                folder = Path(tmp) / image
                folder.mkdir()
                base = train(image, folder)
                content_type, body = request_body(image)
                ports = {name: free_port() for name in trees}
                servers = []
                try:
                    for name, tree in trees.items():
                        env = tree_env(image, base, tree, {"SAGEMAKER_BIND_TO_PORT": str(ports[name]),
                                                           "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
                        servers.append(_start([sys.executable, "-m", "common.entrypoint", "serve"], env, ports[name],
                                              tree, f"{image} ({name})"))
                    ports["bare Flask"] = bare_port
                    loads[image] = os.getloadavg()[0]
                    runs: dict[str, list[dict[str, float]]] = {name: [] for name in [*ports, "fixed work"]}
                    for _ in range(args.rounds):  # alternate, so a change in machine load hits every server alike
                        for name, port in ports.items():
                            runs[name].append(load(port, content_type, body, args.requests, args.warmup))
                        runs["fixed work"].append(fixed_work(args.requests, args.warmup))
                finally:
                    for server in servers:
                        stop_server(server)
                measured[image] = {name: median_figures(rounds) for name, rounds in runs.items()}
                _print(image, content_type, measured[image], loads[image])
                _record(results, image, content_type, measured[image], loads[image], args.requests)
    finally:
        stop_server(bare)
    print(f"  written to {results.path.relative_to(REPO)}")


def _print(image: str, content_type: str, figures: dict[str, dict[str, float]], load_average: float) -> None:
    print(f"\n== {image}: 1-row {content_type} (load average {load_average:.2f} on {os.cpu_count()} CPUs)")
    print(f"  {'server':<12} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'p99/p50':>8} {'req/s':>7}"
          "  p99/p50 of each round")
    for name, f in figures.items():
        print(f"  {name:<12} {f['p50']:>7.3f} {f['p90']:>7.3f} {f['p99']:>7.3f} {f['max']:>7.2f} "
              f"{f['p99/p50']:>7.2f}x {f['req/s']:>7.0f}  {' '.join(map(str, f['rounds p99/p50']))}")
    print(f"  load average at each round: {' '.join(map(str, figures['ours']['rounds load']))}", flush=True)


def _record(results: Results, image: str, content_type: str, figures: dict[str, dict[str, float]],
            load_average: float, requests: int) -> None:
    ours, bare = figures["ours"], figures["bare Flask"]
    size = {"data": f"1-row {content_type} requests, keep-alive, {requests} per round", "rows": 1, "cols": COLS}
    anchor = "bare Flask + gunicorn, fixed answer"
    extra = {"load_average": load_average, "figures": figures}
    results.add(image, f"serve 1-row {content_type}: p50 latency", **size, ours=ours["p50"], unit="ms",
                anchor=anchor, anchor_value=bare["p50"], **extra)
    results.add(image, f"serve 1-row {content_type}: p99 latency", **size, ours=ours["p99"], unit="ms",
                anchor=anchor, anchor_value=bare["p99"], p99_over_p50=ours["p99/p50"],
                anchor_p99_over_p50=bare["p99/p50"])
    results.add(image, f"serve 1-row {content_type}: requests/s", **size, ours=ours["req/s"], unit="req/s",
                anchor=anchor, anchor_value=bare["req/s"])


if __name__ == "__main__":
    main()
