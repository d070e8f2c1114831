"""PCA: ours through the entrypoint from recordIO files vs scikit-learn in memory, side by side.

regular: 1,000,000 x 100 float32 (decaying spectrum, off-centre), num_components=10, streamed by
`python -m common.entrypoint train` (process start to exit, file reading included; mini_batch_size=500
as the SDK sends it), against sklearn PCA(svd_solver="covariance_eigh") fitting the same float32 array
already in memory. Also shown: the start-up share (a 1,000-row job) and our solver fed by the same
channel reader inside this process. Accuracy against a full SVD of the centered data in float64
(Householder QR, then the SVD of R). Peak RSS of our process at two row counts.

randomized: 20,000 x 2,000 float32, rank-50 signal plus noise, num_components=50, against sklearn
PCA(svd_solver="randomized") (iterated_power="auto", n_oversamples=10), with extra_components=10 (the
same oversampling) and the default -1 (K=100). Ours through the entrypoint from files, and in memory
(the same solver fed from the array). Errors: the largest relative error of the top-50 singular values
and the largest principal angle between the top-50 subspaces, against an exact float64
eigendecomposition of the centered scatter matrix.

Our processes are started by a small helper made before any data exists: a child forked from this
large process would count this process's pages in its peak RSS (os.wait4's ru_maxrss).
Contenders run in turn, round after round (the machine is shared); medians of --repeats rounds.
Usage: bench_pca.py [--rows N,N,...] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.linalg
from benchlib import REPO, report
from results import Results, add_option
from sklearn.decomposition import PCA as SkPCA

from algorithms.pca import solvers
from algorithms.pca.algorithm import PCA, block_rows, channel_blocks
from algorithms.pca.hyperparameters import PCAHyperparameters
from common.channels import FILE, REPLICATED, ChannelConfig, DataChannel
from common.cluster.collective import Collective
from common.data import content_types as ct
from common.data.content_types import MediaType
from common.data.recordio_writer import encode_dense
from common.hyperparameters import parse_hyperparameters
from tools.local import entrypoint_env, write_job

SPAWNER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    started = time.perf_counter()
    child = subprocess.Popen(job["argv"], env=job["env"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    print(json.dumps([time.perf_counter() - started, status, usage.ru_maxrss / 1024]), flush=True)
"""


class Spawner:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def train(self, base: Path) -> tuple[float, int, float]:
        """(seconds, exit status, peak RSS in MB) of one `train` of the job under `base`."""
        job = {"argv": [sys.executable, "-m", "common.entrypoint", "train"], "env": entrypoint_env("pca", base)}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        seconds, status, peak = json.loads(self.process.stdout.readline())
        return seconds, status, peak

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def write_parts(x: np.ndarray, folder: Path, parts: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, part in enumerate(np.array_split(x, parts)):
        path = folder / f"part-{i}.rec"
        path.write_bytes(encode_dense(part))
        files.append(path)
    return files


class Job:
    """One training job of ours, laid out once; each call trains it afresh and returns the seconds."""

    def __init__(self, spawner: Spawner, base: Path, files: list[Path], hyperparameters: dict[str, str]) -> None:
        self.spawner, self.base, self.peak = spawner, base, 0.0
        write_job(base, hyperparameters, {"train": (files, None)})
        self()  # also fills numba's cache; not counted

    def __call__(self) -> float:
        for leftover in ("model", "checkpoints", "output"):  # no resuming from the previous run
            subprocess.run(["rm", "-rf", str(self.base / leftover)], check=True)
        seconds, status, peak = self.spawner.train(self.base)
        if status != 0:
            raise SystemExit((self.base / "output" / "failure").read_text())
        self.peak = max(self.peak, peak)
        return seconds

    def model(self) -> PCA:
        return PCA.load(self.base / "model")


def clock(function: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        function()
        return time.perf_counter() - started

    return run


def rounds(contenders: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each contender, run in turn once per round so that all see the same machine load;
    a first round warms up and is not counted."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_number in range(repeats + 1):
        for name, run in contenders.items():
            seconds = run()
            if round_number:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def exact_top(x: np.ndarray, k: int, via_qr: bool) -> tuple[np.ndarray, np.ndarray]:
    """Top-k singular values (descending) and right singular vectors of the centered data, float64."""
    centered = x.astype(np.float64)
    centered -= centered.mean(axis=0)
    if via_qr:
        _, s, vt = np.linalg.svd(np.linalg.qr(centered, mode="r"))
        return s[:k], vt[:k].T
    d = x.shape[1]
    values, vectors = scipy.linalg.eigh(centered.T @ centered, subset_by_index=[d - k, d - 1])
    return np.sqrt(values[::-1]), vectors[:, ::-1]


def errors(s: np.ndarray, v: np.ndarray, exact_s: np.ndarray, exact_v: np.ndarray) -> tuple[float, float, float]:
    """(max relative error of s, max 1 - |cos| per component, max principal angle); s, v descending."""
    s_error = float(np.max(np.abs(s - exact_s) / exact_s))
    cosines = np.abs(np.sum(v * exact_v, axis=0))
    return s_error, float(np.max(1 - cosines)), float(scipy.linalg.subspace_angles(v, exact_v).max())


def shown(values: tuple[float, ...]) -> str:
    return " / ".join(f"{value:.1e}" for value in values)


def model_errors(model: PCA, exact_s: np.ndarray, exact_v: np.ndarray) -> tuple[float, float, float]:
    return errors(model.s[::-1].astype(np.float64), model.v[:, ::-1].astype(np.float64), exact_s, exact_v)


def bench_regular(results: Results, spawner: Spawner, rows: int, repeats: int, tmp: Path) -> None:
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((100, 100)))[0] * np.geomspace(10, 1, 100)
    x = np.empty((rows, 100), np.float32)
    for start in range(0, rows, 100_000):  # in slices, to keep the float64 temporaries small
        x[start:start + 100_000] = rng.standard_normal((min(rows - start, 100_000), 100)) @ basis.T + 5.0
    files = write_parts(x, tmp / "regular" / "train", 8)
    hyperparameters = {"feature_dim": "100", "num_components": "10", "mini_batch_size": "500"}
    hp = parse_hyperparameters(PCAHyperparameters, hyperparameters)
    channel = DataChannel(ChannelConfig("train", MediaType(ct.RECORDIO), FILE, REPLICATED, PCA.channels[0]),
                          tmp / "regular")
    full = Job(spawner, tmp / "full", files, hyperparameters)
    quarter = Job(spawner, tmp / "quarter", files[:2], hyperparameters)
    startup = Job(spawner, tmp / "tiny", write_parts(x[:1000], tmp / "tiny-data", 1), hyperparameters)
    fitted: list[SkPCA] = []
    times = rounds({
        "ours": full, "quarter": quarter, "startup": startup,
        "in process": clock(lambda: solvers.fit_regular(channel_blocks(channel, hp), 100, 10, True, Collective())),
        "sklearn": clock(lambda: fitted.append(SkPCA(10, svd_solver="covariance_eigh").fit(x))),
    }, repeats)
    exact_s, exact_v = exact_top(x, 10, via_qr=True)
    sk_err = errors(fitted[-1].singular_values_, fitted[-1].components_.T, exact_s, exact_v)
    ours_err = model_errors(full.model(), exact_s, exact_v)
    ours, sk = times["ours"], times["sklearn"]
    report(f"PCA regular: {rows:,} x 100 float32 ({x.nbytes / 1e6:.0f} MB; recordIO files "
           f"{sum(f.stat().st_size for f in files) / 1e6:.0f} MB), num_components=10; medians of {repeats} rounds", [
               ("ours: entrypoint train from recordIO files", f"{ours:8.2f} s"),
               ("  of which process start-up (a 1,000-row job)", f"{times['startup']:8.2f} s"),
               ("ours in process: channel reader + solver", f"{times['in process']:8.2f} s"),
               ("sklearn PCA(covariance_eigh) fit in memory", f"{sk:8.2f} s"),
               ("time ratio entrypoint/sklearn, in process/sklearn",
                f"{ours / sk:8.2f}x, {times['in process'] / sk:.2f}x (goal <= 1.5x)"),
               ("ours peak RSS", f"{full.peak:.0f} MB at {rows:,} rows, {quarter.peak:.0f} MB at "
                                 f"{rows // 4:,} rows ({times['quarter']:.2f} s)"),
               ("ours vs full SVD: s rel / 1-|cos| / angle", shown(ours_err)),
               ("sklearn vs full SVD: s rel / 1-|cos| / angle", shown(sk_err)),
           ])
    size = {"data": "synthetic decaying spectrum", "rows": rows, "cols": 100}
    anchor = "sklearn PCA(covariance_eigh) fit in memory"
    results.add("pca", "regular: entrypoint train from recordIO files", **size, ours=ours, unit="s", anchor=anchor,
                anchor_value=sk, peak_rss_mb=full.peak)
    results.add("pca", "regular: in process, channel reader + solver", **size, ours=times["in process"], unit="s",
                anchor=anchor, anchor_value=sk)
    results.add("pca", "regular: process start-up (a 1,000-row job)", **size, ours=times["startup"], unit="s")
    results.add("pca", "regular: largest principal angle vs full SVD", **size, ours=ours_err[2], unit="radians",
                anchor="sklearn PCA(covariance_eigh)", anchor_value=sk_err[2])


def bench_randomized(results: Results, spawner: Spawner, repeats: int, tmp: Path) -> None:
    rows, dim, k = 20_000, 2_000, 50
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((dim, k)))[0]
    x = ((rng.standard_normal((rows, k)) * np.linspace(10, 1, k)) @ basis.T
         + 0.1 * rng.standard_normal((rows, dim)) + 3.0).astype(np.float32)
    files = write_parts(x, tmp / "randomized", 4)
    exact_s, exact_v = exact_top(x, k, via_qr=False)
    sk: list[SkPCA] = []
    contenders: dict[str, Callable[[], float]] = {
        "sklearn": clock(lambda: sk.append(SkPCA(k, svd_solver="randomized", random_state=0).fit(x)))}
    jobs: dict[str, tuple[Job, PCAHyperparameters]] = {}
    fits: dict[str, list[solvers.Fit]] = {}
    for extra in ("10", "-1"):
        hyperparameters = {"feature_dim": str(dim), "num_components": str(k), "mini_batch_size": "500",
                           "algorithm_mode": "randomized", "extra_components": extra}
        hp = parse_hyperparameters(PCAHyperparameters, hyperparameters)
        jobs[extra] = (Job(spawner, tmp / f"randomized-{extra}", files, hyperparameters), hp)
        step = block_rows(hp)
        blocks = [x[i:i + step] for i in range(0, rows, step)]
        fits[extra] = []
        contenders[f"entrypoint {extra}"] = jobs[extra][0]
        contenders[f"in memory {extra}"] = clock(lambda fits=fits[extra], blocks=blocks, hp=hp: fits.append(
            solvers.fit_randomized(lambda epoch: blocks, dim, k, hp.sketch_size, True, Collective())))
    times = rounds(contenders, repeats)
    sk_time = times["sklearn"]
    sk_err = errors(sk[-1].singular_values_, sk[-1].components_.T, exact_s, exact_v)
    lines = [("sklearn PCA(randomized) fit in memory", f"{sk_time:8.2f} s; error s / angle {shown(sk_err[::2])}")]
    size = {"data": "synthetic rank-50 signal + noise", "rows": rows, "cols": dim}
    anchor = "sklearn PCA(randomized) fit in memory"
    for extra, (job, hp) in jobs.items():
        entry, memory = times[f"entrypoint {extra}"], times[f"in memory {extra}"]
        fit = fits[extra][-1]
        name = f"ours extra_components={extra} (K={hp.sketch_size})"
        entry_err = model_errors(job.model(), exact_s, exact_v)
        lines += [
            (f"{name}: entrypoint", f"{entry:8.2f} s, peak RSS {job.peak:.0f} MB; "
                                    f"error s / angle {shown(entry_err[::2])}"),
            (f"{name}: in memory", f"{memory:8.2f} s; error s / angle "
                                   f"{shown(errors(fit.s[::-1], fit.v[:, ::-1], exact_s, exact_v)[::2])}"),
            ("  time ratio entrypoint/sklearn, in memory/sklearn", f"{entry / sk_time:8.2f}x, {memory / sk_time:.2f}x"),
        ]
        case = f"randomized extra_components={extra}"
        results.add("pca", f"{case}: entrypoint", **size, ours=entry, unit="s", anchor=anchor, anchor_value=sk_time,
                    peak_rss_mb=job.peak)
        results.add("pca", f"{case}: in memory", **size, ours=memory, unit="s", anchor=anchor, anchor_value=sk_time)
        results.add("pca", f"{case}: largest principal angle", **size, ours=entry_err[2], unit="radians",
                    anchor="sklearn PCA(randomized)", anchor_value=sk_err[2])
    report(f"PCA randomized: {rows:,} x {dim:,} float32 ({x.nbytes / 1e6:.0f} MB), rank-50 signal + noise, "
           f"num_components={k}, {solvers.POWER_ITERATIONS + 1} passes; medians of {repeats} rounds", lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--rows", "50000,1000000", "50000,200000", help="rows of the regular case, one run per size")
    add_option(parser, "--repeats", "3", kind=int)
    args = parser.parse_args()
    results = Results("pca", ("scikit-learn", "scipy"), **vars(args))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    spawner = Spawner()
    try:
        for rows in args.rows:
            with tempfile.TemporaryDirectory() as tmp:
                bench_regular(results, spawner, rows, args.repeats, Path(tmp))
        with tempfile.TemporaryDirectory() as tmp:
            bench_randomized(results, spawner, args.repeats, Path(tmp))
    finally:
        spawner.close()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
