"""Cold start in the container: from `<engine> run -d IMAGE serve` to the first /ping 200, the first
/invocations against the ones after it, and the container's memory, for every image.

Per image: a tiny model trained in the container (bench_startup.py's jobs(), 1,000 rows x 10), then R times
(interleaved across the images, median): the time from issuing `run -d ... serve` to the first /ping 200
(polled every 10 ms on a published port), then 100 one-row /invocations in the image's natural content type,
each on a new connection: the first one's latency, the median of the 2nd to 10th, the 100th, and (3 times,
median) one after 1 s without requests, which shows what the first pays for a CPU gone cold; then the
container's memory (cgroup: current use, peak, and the anonymous memory of its processes). Per image and in
the same rounds, the anchor: the engine's own floor, the same image run with `python -c` serving /ping from
http.server (the engine's start, its network and the image's Python, nothing of ours). Once per image,
bench_startup.py's figure without a container (the virtualenv's Python, 1 worker) on the same model, and a
serverless-sized run: `--memory 1g` and 100 requests of 100 rows, whether every one was served and the
cgroup's peak. Builds nothing: an image that is missing is named with the make target that builds it.

Usage: bench_cold_start.py [--rows N] [--repeats R] [--requests N] [--images kmeans,pca,...]
    CONTAINER_ENGINE (default: docker when its daemon answers, else "podman --runtime runc"), IMAGE_PREFIX,
    IMAGE_TAG (default: the version in pyproject.toml); make bench-cold-start sets them as docker/images.mk does.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_startup import COLS, jobs, serve_once
from benchlib import REPO, free_port
from results import Results, add_option

from common.data.recordio_writer import encode_dense
from tools.local import write_job

RECORDIO = "application/x-recordio-protobuf"
# The floor: what any server in this image costs to start, with none of our code.
FLOOR = ("import http.server as s\n"
         "class H(s.BaseHTTPRequestHandler):\n"
         "    def do_GET(self):\n"
         "        self.send_response(200); self.send_header('Content-Length', '0'); self.end_headers()\n"
         "s.HTTPServer(('', 8080), H).serve_forever()\n")
# The sklearn image serves the model of bench_startup's script through its default handlers.
SKLEARN_INFERENCE = "# the image's default handlers\n"
PING_EVERY = 0.01
IDLE_S, IDLE_REQUESTS = 1.0, 3  # then a request after a pause, on the warm server
MEMORY_SCRIPT = r"""
import os
def first(*paths):
    for path in paths:
        if os.path.exists(path):
            return open(path).read()
    return ""
stat = first("/sys/fs/cgroup/memory.stat", "/sys/fs/cgroup/memory/memory.stat")
stat = dict(line.split() for line in stat.splitlines())
current = first("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes").strip()
peak = first("/sys/fs/cgroup/memory.peak", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes").strip()
anon = stat.get("anon", stat.get("total_rss", stat.get("rss", "0")))
rss = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        rss += int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1]) * 1024
    except (OSError, StopIteration):
        pass
print(current or 0, peak or 0, anon, rss)
"""


def find_engine() -> list[str]:
    given = os.environ.get("CONTAINER_ENGINE")
    for candidate in [given] if given else ["docker", "podman --runtime runc"]:
        command = shlex.split(candidate)
        if shutil.which(command[0]) and subprocess.run([*command, "info"], capture_output=True,
                                                       timeout=120).returncode == 0:
            return command
    raise SystemExit("no container engine answers (CONTAINER_ENGINE; podman: docker/setup-podman.sh)")


def image_tag(name: str) -> str:
    tag = os.environ.get("IMAGE_TAG") or re.search(r'^version = "(.*)"', (REPO / "pyproject.toml").read_text(),
                                                   re.M).group(1)
    return f"{os.environ.get('IMAGE_PREFIX', 'sagemaker-')}{name}:{tag}"


def image_mb(engine: list[str], tag: str) -> float | None:
    result = subprocess.run([*engine, "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True,
                            text=True)
    return int(result.stdout.strip()) / 1e6 if result.returncode == 0 else None


def request_body(content_type: str, rows: int) -> tuple[bytes, str]:
    """`rows` rows of the image's natural request type (bench_startup's training data type), and that type."""
    x = np.random.default_rng(1).standard_normal((rows, COLS)).astype(np.float32)
    if content_type == RECORDIO:
        return encode_dense(x), RECORDIO
    text = io.StringIO()
    np.savetxt(text, x, delimiter=",", fmt="%.6g")
    return text.getvalue().encode(), "text/csv"


def train(engine: list[str], tag: str, image: str, folder: Path) -> Path:
    """The tiny job trained in the container; returns its /opt/ml folder (model/ inside)."""
    _, hyperparameters, channels = jobs_for[image]
    base = folder / "ml"
    write_job(base, hyperparameters, channels(folder))
    result = subprocess.run([*engine, "run", "--rm", "-v", f"{base}:/opt/ml", tag, "train"], capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"{image}: training failed:\n{(result.stdout + result.stderr)[-3000:]}")
    if image == "sklearn":
        (base / "model" / "code").mkdir(exist_ok=True)
        (base / "model" / "code" / "inference.py").write_text(SKLEARN_INFERENCE)
    return base


def ping(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False


def invoke(port: int, body: bytes, content_type: str) -> tuple[float, int]:
    """(seconds, status) of one /invocations on a new connection."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/invocations", body, {"Content-Type": content_type, "Accept": "application/json"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return time.perf_counter() - started, response.status


class Container:
    """One `run -d` of an image, timed from the moment it is issued to the first /ping 200."""

    def __init__(self, engine: list[str], tag: str, args: list[str], command: list[str]) -> None:
        self.engine, self.port = engine, free_port()
        self.name = f"bench-cold-start-{os.getpid()}-{self.port}"
        started = time.perf_counter()
        subprocess.run([*engine, "run", "-d", "--name", self.name, "-p", f"127.0.0.1:{self.port}:8080", *args,
                        tag, *command], capture_output=True, check=True)
        self.issued = time.perf_counter() - started  # `run -d` returned: the container is started
        deadline = started + 120
        while not ping(self.port):
            if time.perf_counter() > deadline:
                raise SystemExit(f"{tag} never answered /ping:\n{self.logs()[-3000:]}")
            time.sleep(PING_EVERY)
        self.ready = time.perf_counter() - started

    def memory_mb(self) -> tuple[float, float, float, float]:
        """The container's (current use, peak use, anonymous memory, RSS of its processes summed) in MB."""
        result = subprocess.run([*self.engine, "exec", self.name, "python", "-c", MEMORY_SCRIPT], capture_output=True,
                                text=True, check=True)
        return tuple(int(value) / 2**20 for value in result.stdout.split())  # type: ignore[return-value]

    def oom_killed(self) -> bool:
        result = subprocess.run([*self.engine, "inspect", "--format", "{{.State.OOMKilled}}", self.name],
                                capture_output=True, text=True)
        return result.stdout.strip() == "true"

    def logs(self) -> str:
        result = subprocess.run([*self.engine, "logs", self.name], capture_output=True, text=True)
        return result.stdout + result.stderr

    def remove(self) -> None:
        subprocess.run([*self.engine, "rm", "-f", "-t", "0", self.name], capture_output=True)


def cold_start(engine: list[str], tag: str, model: Path, body: bytes, content_type: str, requests: int
               ) -> dict[str, float]:
    container = Container(engine, tag, ["-v", f"{model}:/opt/ml/model:ro"], ["serve"])
    try:
        latencies = []
        for _ in range(requests):
            seconds, status = invoke(container.port, body, content_type)
            if status != 200:
                raise SystemExit(f"{tag}: /invocations answered {status}:\n{container.logs()[-3000:]}")
            latencies.append(seconds)
        after_idle = []
        for _ in range(IDLE_REQUESTS):
            time.sleep(IDLE_S)
            after_idle.append(invoke(container.port, body, content_type)[0])
        current, peak, anon, rss = container.memory_mb()
    finally:
        container.remove()
    return {"ping_s": container.ready, "run_returned_s": container.issued, "first_ms": 1e3 * latencies[0],
            "later_ms": 1e3 * statistics.median(latencies[1:10]), "last_ms": 1e3 * latencies[-1],
            "idle_ms": 1e3 * statistics.median(after_idle),
            "memory_mb": current, "peak_mb": peak, "anon_mb": anon, "rss_mb": rss}


def floor(engine: list[str], tag: str) -> float:
    container = Container(engine, tag, ["--entrypoint", "python"], ["-c", FLOOR])
    container.remove()
    return container.ready


def serverless(engine: list[str], tag: str, model: Path, body: bytes, content_type: str, requests: int
               ) -> dict[str, object]:
    """`--memory 1g`: did all `requests` of the 100-row body answer 200, and the cgroup's peak."""
    try:
        container = Container(engine, tag, ["--memory", "1g", "--memory-swap", "1g", "-v",
                                            f"{model}:/opt/ml/model:ro"], ["serve"])
    except (SystemExit, subprocess.CalledProcessError) as exc:
        return {"served": False, "why": str(exc)[:300]}
    try:
        statuses = []
        for _ in range(requests):
            try:
                statuses.append(invoke(container.port, body, content_type)[1])
            except OSError as exc:
                statuses.append(str(exc))
        current, peak, _, _ = container.memory_mb()
        served = all(status == 200 for status in statuses) and not container.oom_killed()
        return {"served": served, "peak_mb": peak, "memory_mb": current,
                "why": "" if served else f"statuses {sorted(set(map(str, statuses)))}"}
    finally:
        container.remove()


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


jobs_for: dict = {}


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--rows", "1000", kind=int, help="rows of each tiny training job")
    add_option(parser, "--repeats", "5", kind=int, help="cold starts per image (median), interleaved")
    add_option(parser, "--requests", "100", kind=int, help="one-row /invocations after each cold start")
    add_option(parser, "--images", "kmeans,pca,knn,rcf,fm,xgboost,lightgbm,catboost,sklearn",
               kind=lambda text: [name for name in text.split(",") if name], help="images to measure")
    args = parser.parse_args()
    engine = find_engine()
    tags = {image: image_tag(image) for image in args.images}
    sizes = {image: image_mb(engine, tag) for image, tag in tags.items()}
    missing = [image for image, size in sizes.items() if size is None]
    if missing:
        raise SystemExit("not built: " + ", ".join(tags[image] for image in missing) + "; build with "
                         + " ".join(f"make image-{image}" for image in missing) + " (or make images)")
    jobs_for.update(jobs(args.rows))
    engine_name = " ".join(engine)
    results = Results("cold_start", ("gunicorn", "flask"), **vars(args), engine=engine_name)
    with tempfile.TemporaryDirectory() as tmp:
        bases = {}
        for image in args.images:
            (Path(tmp) / image).mkdir()
            bases[image] = train(engine, tags[image], image, Path(tmp) / image)
        model_kb = {image: sum(p.stat().st_size for p in (base / "model").rglob("*") if p.is_file()) / 1e3
                    for image, base in bases.items()}
        bodies = {image: request_body(jobs_for[image][0], 1) for image in args.images}
        runs: dict[str, list[dict[str, float]]] = {image: [] for image in args.images}
        floors: dict[str, list[float]] = {image: [] for image in args.images}
        for image in args.images:  # one start each first: the engine's page cache holds every image's layers
            floor(engine, tags[image])
        for _ in range(args.repeats):
            for image in args.images:
                runs[image].append(cold_start(engine, tags[image], bases[image] / "model", *bodies[image],
                                              args.requests))
                floors[image].append(floor(engine, tags[image]))
        in_process = {image: serve_once(image, bases[image], REPO)[0] for image in args.images}
        limited = {image: serverless(engine, tags[image], bases[image] / "model",
                                     *request_body(jobs_for[image][0], 100), args.requests)
                   for image in args.images}

    print(f"\n== cold start in the container ({engine_name}): `run -d ... serve` to the first /ping 200, median "
          f"of {args.repeats} interleaved starts; a tiny model ({args.rows:,} x {COLS}); {args.requests} one-row "
          f"/invocations after each; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  {'image':<9} {'size MB':>8} {'model KB':>9} {'ping s':>7} {'floor s':>8} {'/floor':>7} "
          f"{'no ctr s':>9} {'1st ms':>7} {'2-10 ms':>8} {'100th ms':>9} {'idle ms':>8} {'mem MB':>7} {'peak MB':>8} "
          f"{'anon MB':>8} {'1 GB: 100 x 100 rows':>22}")
    for image in args.images:
        measured = runs[image]
        ping_s, floor_s = median_of(measured, "ping_s"), statistics.median(floors[image])
        first, later, last, idle = (median_of(measured, key) for key in ("first_ms", "later_ms", "last_ms", "idle_ms"))
        memory, peak, anon, rss = (median_of(measured, key) for key in ("memory_mb", "peak_mb", "anon_mb", "rss_mb"))
        small = limited[image]
        verdict = f"served, peak {small['peak_mb']:.0f} MB" if small["served"] else f"FAILED {small['why']}"
        print(f"  {image:<9} {sizes[image]:>8.0f} {model_kb[image]:>9.1f} {ping_s:>7.2f} {floor_s:>8.2f} "
              f"{ping_s / floor_s:>6.1f}x {in_process[image]:>9.2f} {first:>7.1f} {later:>8.1f} {last:>9.1f} "
              f"{idle:>8.1f} {memory:>7.0f} {peak:>8.0f} {anon:>8.0f} {verdict:>22}")
        size = {"data": jobs_for[image][0], "rows": args.rows, "cols": COLS}
        floor_name = "the engine's floor: the image running python -c with http.server"
        results.add(image, "container start to first /ping 200", **size, ours=ping_s, unit="s", anchor=floor_name,
                    anchor_value=floor_s, run_returned_s=median_of(measured, "run_returned_s"),
                    in_process_s=in_process[image], image_mb=sizes[image], model_kb=model_kb[image],
                    runs=[run["ping_s"] for run in measured], floor_runs=floors[image])
        results.add(image, "first /invocations after /ping (1 row)", **size, ours=first, unit="ms",
                    anchor="median of the 2nd to 10th", anchor_value=later, hundredth_ms=last, after_idle_ms=idle)
        results.add(image, "container memory after 100 requests", **size, ours=memory, unit="MB", peak_mb=peak,
                    anon_mb=anon, rss_sum_mb=rss)
        results.add(image, "--memory 1g: 100 requests of 100 rows, peak", **size,
                    ours=small.get("peak_mb", float("nan")), unit="MB", served=small["served"], why=small["why"])
    print("  ping s: the first /ping 200 after `run -d` was issued; floor s: the same for python -c http.server in "
          "the same image; no ctr s: bench_startup.py's serve without a container (1 worker); idle ms: a request "
          f"after {IDLE_S:g} s without requests to the warm server (median of {IDLE_REQUESTS}), the cost of a CPU gone "
          "cold that the 1st also pays")
    print(f"  written to {results.path.relative_to(REPO)}")


if __name__ == "__main__":
    sys.exit(main())
