"""k-means inertia on real data: ours through the entrypoint vs scikit-learn KMeans(n_init=3).

Each seed shuffles the rows (our stream depends on their order) and seeds scikit-learn; the tables
show medians over the seeds. Ours runs with the SDK's defaults plus `init_method=kmeans++`, at
epochs 1, 2, 5, 10. Wall times are the entrypoint process (interpreter start included) and
sklearn's fit.

Data sets:
  digits           sklearn's load_digits, 1,797 x 64, k=10
  digits-shifted   the digits and their eight one-pixel shifts, 16,173 x 64, k=10
  fashion-mnist    the Debian package dataset-fashion-mnist's training images, 60,000 x 784, k=10
                   (only where its train-images-idx3-ubyte.gz is found: --fashion-mnist PATH)
  breast-cancer    sklearn's load_breast_cancer, standardised, 569 x 30, k=8
  wine             sklearn's load_wine, standardised, 178 x 13, k=5
  skewed-tabular   synthetic: 100,000 x 20, 30 clusters of Zipf-like sizes, log-normal features, k=30
The speed check trains 200,000 x 50 blobs (k=50, epochs=1) through the entrypoint, then times the
same job in-process as the algorithm was before (no row sample, plain k-means++ starts in the
reduction) and as it is, interleaved so that the machine's load hits both alike. The quality tables
also show, at epochs=1 and in-process, the algorithm before and with only the greedy starts.

Usage: bench_kmeans_inertia.py [--seeds N] [--epochs 1,2,5,10] [--sets digits,wine] [--speed-only]
                               [--fashion-mnist PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
from benchlib import interleaved_medians, report
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_blobs
from sklearn.preprocessing import StandardScaler

from algorithms.kmeans import kernels
from algorithms.kmeans.algorithm import KMeans
from algorithms.kmeans.refinement import Refinement
from common.data.recordio_writer import encode_dense
from common.paths import Paths
from common.training import run_training
from tools.local import entrypoint_env, write_job

DEFAULT_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
ISSUE_DEFAULTS = {"init_method": "kmeans++"}


def inertia(x: np.ndarray, centers: np.ndarray) -> float:
    centers = centers.astype(np.float64)
    norms = (centers ** 2).sum(1)
    total = 0.0
    for start in range(0, len(x), 20_000):
        part = x[start:start + 20_000].astype(np.float64)
        squared = (part ** 2).sum(1)[:, None] - 2 * part @ centers.T + norms
        total += float(np.maximum(squared.min(1), 0).sum())
    return total


def shifted_digits() -> np.ndarray:
    images = load_digits().images
    shifted = [images]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                shifted.append(np.roll(np.roll(images, dy, axis=1), dx, axis=2))
    return np.concatenate(shifted).reshape(-1, 64)


def fashion_mnist(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    raw = gzip.decompress(path.read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784).astype(np.float32)


def skewed_tabular() -> np.ndarray:
    rng = np.random.default_rng(11)
    sizes = np.maximum((100_000 / np.arange(1, 31) / 4.0).astype(int), 50)
    centers = rng.normal(0, 2.0, (30, 20))
    parts = [rng.normal(center, rng.uniform(0.3, 1.5), (size, 20)) for center, size in zip(centers, sizes)]
    x = np.concatenate(parts)[:100_000]
    return np.exp(x / 4.0)


def data_sets(names: list[str], fashion_path: Path) -> list[tuple[str, np.ndarray, int]]:
    scaled = StandardScaler()
    makers = {
        "digits": lambda: (load_digits().data, 10),
        "digits-shifted": lambda: (shifted_digits(), 10),
        "fashion-mnist": lambda: (fashion_mnist(fashion_path), 10),
        "breast-cancer": lambda: (scaled.fit_transform(load_breast_cancer().data), 8),
        "wine": lambda: (scaled.fit_transform(load_wine().data), 5),
        "skewed-tabular": lambda: (skewed_tabular(), 30),
    }
    sets = []
    for name in names:
        x, k = makers[name]()
        if x is None:
            print(f"(skipping {name}: {fashion_path} is not there)")
            continue
        sets.append((name, np.asarray(x, np.float32), k))
    return sets


def write_parts(x: np.ndarray, folder: Path, parts: int = 4) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, part in enumerate(np.array_split(x, parts)):
        path = folder / f"part-{i}.rec"
        path.write_bytes(encode_dense(part))
        files.append(path)
    return files


def train_ours(files: list[Path], base: Path, hyperparameters: dict[str, str]) -> tuple[np.ndarray, float]:
    shutil.rmtree(base, ignore_errors=True)
    write_job(base, hyperparameters, {"train": (files, None)})
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "common.entrypoint", "train"],
                            env=entrypoint_env("kmeans", base), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    return KMeans.load(base / "model").centers, elapsed


def train_sklearn(x: np.ndarray, k: int, seed: int) -> tuple[float, float]:
    started = time.perf_counter()
    model = SkKMeans(k, n_init=3, random_state=seed).fit(x)
    return inertia(x, model.cluster_centers_), time.perf_counter() - started


def bench_quality(name: str, x: np.ndarray, k: int, seeds: int, epochs: list[int], tmp: Path) -> None:
    ours: dict[int, list[float]] = {e: [] for e in epochs}
    ratios: dict[int, list[float]] = {e: [] for e in epochs}
    times: dict[int, list[float]] = {e: [] for e in epochs}
    theirs, their_times, monotone = [], [], 0
    earlier: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for seed in range(seeds):
        shuffled = x[np.random.default_rng(seed).permutation(len(x))]
        files = write_parts(shuffled, tmp / f"data-{seed}")
        best, best_time = train_sklearn(shuffled, k, seed)
        theirs.append(best)
        their_times.append(best_time)
        for variant in VARIANTS:
            centers = variant_centers(files, tmp / variant, k, x.shape[1], variant)
            earlier[variant].append(inertia(shuffled, centers) / best)
        per_epoch = []
        for count in epochs:
            hyperparameters = {"k": str(k), "feature_dim": str(x.shape[1]), "epochs": str(count), **ISSUE_DEFAULTS}
            centers, elapsed = train_ours(files, tmp / "ml", hyperparameters)
            value = inertia(shuffled, centers)
            per_epoch.append(value)
            ours[count].append(value)
            ratios[count].append(value / best)
            times[count].append(elapsed)
        monotone += all(b <= a * (1 + 1e-9) for a, b in zip(per_epoch, per_epoch[1:]))
    rows = [("sklearn KMeans(n_init=3) inertia", f"{statistics.median(theirs):.6g} "
                                                 f"(fit {statistics.median(their_times):.2f} s)")]
    for variant, values in earlier.items():
        rows.append((f"ours epochs=1, {VARIANTS[variant]}", f"ratio {statistics.median(values):.4f} "
                                                            f"(worst {max(values):.4f})"))
    for count in epochs:
        rows.append((f"ours epochs={count}", f"inertia {statistics.median(ours[count]):.6g}  "
                                             f"ratio {statistics.median(ratios[count]):.4f} "
                                             f"(worst {max(ratios[count]):.4f})  "
                                             f"wall {statistics.median(times[count]):.2f} s"))
    rows.append(("seeds whose inertia never rose with epochs", f"{monotone} of {seeds}"))
    report(f"{name}: {x.shape[0]:,} x {x.shape[1]}, k={k}, medians over {seeds} seeds, ours with "
           f"{ISSUE_DEFAULTS} and the other SDK defaults", rows)


def train_in_process(base: Path) -> None:
    shutil.rmtree(base / "checkpoints", ignore_errors=True)  # or it would resume, finished
    with contextlib.redirect_stdout(io.StringIO()):
        code = run_training(KMeans, Paths(base))
    if code != 0:
        raise SystemExit((base / "output" / "failure").read_text())


VARIANTS = {"before": "as before (no sample, plain k-means++ reduction)",
            "greedy": "greedy k-means++ reduction, no sample"}


def plain_kmeans_plus_plus(points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator,
                           local_trials: int) -> np.ndarray:
    return kernels.kmeans_plus_plus(points, weights, k, rng)


def train_variant(base: Path, variant: str) -> None:
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(Refinement, "collect", lambda self: None))  # no sample
        if variant == "before":
            stack.enter_context(mock.patch.object(kernels, "greedy_kmeans_plus_plus", plain_kmeans_plus_plus))
        train_in_process(base)


def variant_centers(files: list[Path], base: Path, k: int, feature_dim: int, variant: str) -> np.ndarray:
    shutil.rmtree(base, ignore_errors=True)
    write_job(base, {"k": str(k), "feature_dim": str(feature_dim), **ISSUE_DEFAULTS}, {"train": (files, None)})
    train_variant(base, variant)
    return KMeans.load(base / "model").centers


def bench_speed(tmp: Path, repeats: int) -> None:
    x, _ = make_blobs(n_samples=200_000, n_features=50, centers=50, cluster_std=3.0, random_state=0)
    x = x.astype(np.float32)
    files = write_parts(x, tmp / "speed", parts=8)
    hyperparameters = {"k": "50", "feature_dim": "50", **ISSUE_DEFAULTS}
    train_ours(files, tmp / "speed-ml", hyperparameters)  # fills numba's cache
    walls, centers = [], None
    for _ in range(repeats):
        centers, elapsed = train_ours(files, tmp / "speed-ml", hyperparameters)
        walls.append(elapsed)
    base = tmp / "speed-ml"
    train_variant(base, "before")
    before = inertia(x, KMeans.load(base / "model").centers)
    medians = interleaved_medians({"before": lambda: train_variant(base, "before"),
                                   "now": lambda: train_in_process(base)}, repeats)
    best, best_time = train_sklearn(x, 50, 0)
    report(f"speed: blobs 200,000 x 50, k=50, epochs=1, {hyperparameters}", [
        ("ours: entrypoint wall", f"{statistics.median(walls):.2f} s (median of {repeats})"),
        ("ours in-process, as before", f"{medians['before']:.2f} s (median of {repeats}, interleaved)"),
        ("ours in-process, now", f"{medians['now']:.2f} s ({medians['now'] / medians['before']:.2f}x)"),
        ("inertia ratio ours / KMeans(n_init=3)", f"{inertia(x, centers) / best:.4f} (before "
                                                  f"{before / best:.4f}; sklearn fit {best_time:.2f} s)"),
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", default="1,2,5,10")
    parser.add_argument("--sets", default="digits,digits-shifted,fashion-mnist,breast-cancer,wine,skewed-tabular")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the speed check")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--fashion-mnist", type=Path, default=DEFAULT_FASHION_MNIST)
    args = parser.parse_args()
    epochs = [int(e) for e in args.epochs.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if not args.speed_only:
            for name, x, k in data_sets(args.sets.split(","), args.fashion_mnist):
                bench_quality(name, x, k, args.seeds, epochs, tmp)
        if not args.no_speed:
            bench_speed(tmp, args.repeats)


if __name__ == "__main__":
    main()
