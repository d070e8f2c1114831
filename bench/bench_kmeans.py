"""k-means: ours through the entrypoint from recordIO files vs scikit-learn in memory.

Quality anchor: sklearn KMeans(n_init=3) inertia. Speed anchor: sklearn MiniBatchKMeans(n_init=3)
fit time. Ours is the wall time of `python -m common.entrypoint train` (process start to exit,
reading and parsing the files included), median of several runs, with its peak RSS
(VmHWM, as the entrypoint logs it).
Usage: bench_kmeans.py [--rows N,N,...] [--repeats R]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import REPO, report
from results import Results, add_option
from sklearn.cluster import KMeans as SkKMeans
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import load_digits, make_blobs

from algorithms.kmeans.algorithm import KMeans
from common.data.recordio_writer import encode_dense
from common.paths import Paths
from common.training import run_training
from tools.local import entrypoint_env, write_job


def inertia(x: np.ndarray, centers: np.ndarray) -> float:
    total = 0.0
    norms = (centers.astype(np.float64) ** 2).sum(1)
    for start in range(0, len(x), 50_000):
        part = x[start:start + 50_000].astype(np.float64)
        d = (part ** 2).sum(1)[:, None] - 2 * part @ centers.T.astype(np.float64) + norms
        total += float(np.maximum(d.min(1), 0).sum())
    return total


def run_ours(x: np.ndarray, k: int, tmp: Path, hyperparameters: dict[str, str], repeats: int
             ) -> tuple[float, float, np.ndarray]:
    files = []
    for i, part in enumerate(np.array_split(x, 8)):
        path = tmp / f"part-{i}.rec"
        path.write_bytes(encode_dense(part))
        files.append(path)
    times, peaks = [], []
    base = tmp / "ml"
    for _ in range(repeats + 1):  # the first run also fills numba's cache
        if base.exists():
            subprocess.run(["rm", "-rf", str(base)], check=True)
        write_job(base, {"k": str(k), "feature_dim": str(x.shape[1]), "force_dense": "True", **hyperparameters},
                  {"train": (files, None)})
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "common.entrypoint", "train"],
                                env=entrypoint_env("kmeans", base), capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit((base / "output" / "failure").read_text())
        times.append(elapsed)
        peaks.append(float(re.search(r"peak memory (\d+) MB", result.stdout).group(1)))
    return statistics.median(times[1:]), max(peaks[1:]), KMeans.load(base / "model").centers


def run_in_process(base: Path, repeats: int) -> float:
    """The same job on the same files inside this process: everything but the interpreter's start."""
    times = []
    for _ in range(repeats):
        shutil.rmtree(base / "checkpoints", ignore_errors=True)  # or it would resume, finished
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = run_training(KMeans, Paths(base))
        times.append(time.perf_counter() - started)
        if code != 0:
            raise SystemExit((base / "output" / "failure").read_text())
    return statistics.median(times)


def bench(results: Results, name: str, x: np.ndarray, k: int, repeats: int, hyperparameters: dict[str, str]
          ) -> None:
    x = x.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        ours_time, ours_peak, centers = run_ours(x, k, Path(tmp), hyperparameters, repeats)
        in_process = run_in_process(Path(tmp) / "ml", repeats)
    ours_inertia = inertia(x, centers)
    mbk_times, mbk_inertia = [], []
    for seed in range(repeats):
        started = time.perf_counter()
        model = MiniBatchKMeans(k, n_init=3, random_state=seed).fit(x)
        mbk_times.append(time.perf_counter() - started)
        mbk_inertia.append(inertia(x, model.cluster_centers_))
    started = time.perf_counter()
    full = SkKMeans(k, n_init=3, random_state=0).fit(x)
    full_time = time.perf_counter() - started
    full_inertia = inertia(x, full.cluster_centers_)
    mbk_time = statistics.median(mbk_times)
    report(f"k-means on {name}: {x.shape[0]:,} x {x.shape[1]}, k={k}, {x.nbytes / 1e6:.0f} MB float32; "
           f"ours {hyperparameters or 'defaults'}", [
               ("ours: entrypoint from recordIO files", f"{ours_time:8.2f} s (median of {repeats}), "
                                                        f"peak RSS {ours_peak:.0f} MB"),
               ("ours: same job in-process (no interpreter start)", f"{in_process:8.2f} s (median of {repeats})"),
               ("sklearn MiniBatchKMeans(n_init=3) fit", f"{mbk_time:8.2f} s (median of {repeats})"),
               ("time ratio ours/MiniBatchKMeans", f"{ours_time / mbk_time:8.2f}x "
                                                   f"(in-process {in_process / mbk_time:.2f}x)"),
               ("sklearn KMeans(n_init=3) fit", f"{full_time:8.2f} s (quality anchor, 1 run)"),
               ("inertia ours", f"{ours_inertia:.6g}"),
               ("inertia KMeans(n_init=3)", f"{full_inertia:.6g}"),
               ("inertia MiniBatchKMeans (median)", f"{statistics.median(mbk_inertia):.6g}"),
               ("inertia ratio ours/KMeans", f"{ours_inertia / full_inertia:.4f}"),
           ])
    size = {"data": name, "rows": x.shape[0], "cols": x.shape[1]}
    anchor = "sklearn MiniBatchKMeans(n_init=3) fit"
    results.add("kmeans", "train: entrypoint from recordIO files", **size, ours=ours_time, unit="s",
                anchor=anchor, anchor_value=mbk_time, peak_rss_mb=ours_peak)
    results.add("kmeans", "train: in process (no interpreter start)", **size, ours=in_process, unit="s",
                anchor=anchor, anchor_value=mbk_time)
    results.add("kmeans", "inertia", **size, ours=ours_inertia, unit="inertia",
                anchor="sklearn KMeans(n_init=3)", anchor_value=full_inertia)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--rows", "50000,1000000", "20000,100000", help="rows of the blobs, one run per size")
    add_option(parser, "--repeats", "3", kind=int)
    args = parser.parse_args()
    results = Results("kmeans", ("scikit-learn",), **vars(args))
    bench(results, "sklearn digits", load_digits().data, 10, args.repeats, {})
    for rows in args.rows:
        x, _ = make_blobs(n_samples=rows, n_features=64, centers=100, cluster_std=2.0, random_state=0)
        bench(results, "synthetic blobs", x, 100, args.repeats, {})


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
