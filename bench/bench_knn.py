"""k-NN: ours side by side with FAISS in process and scikit-learn brute force, in one run.

Data: `blobs-64`, 100,000 x 64 (make_blobs, 100 centres, label = centre) and `digits-784`, scikit-learn's
digits upscaled to 28 x 28 = 784 features and augmented (shifts, noise) to --rows784 rows (default 60,000, the
size of MNIST's training set; every value a full-precision float, the costliest CSV to parse), training rows
drawn from other digits than the 1,000 queries. Per index type (faiss.Flat, faiss.IVFFlat, faiss.IVFPQ):
- build: ours `Knn.fit` (transform, plan, FAISS build) vs the same `index_factory` string built by FAISS
  directly, both from the same in-memory array;
- recall@10 of ours against exact search;
- serving: POST /invocations with 1,000 query rows (text/csv -> JSON, recordIO -> recordIO) to our
  gunicorn server (1 worker, so 2 FAISS threads on 2 cores) vs `index.search` on the same index file in a
  clean child process with 2 FAISS threads; runs interleaved, so both see the same machine load;
- faiss.Flat: classifier accuracy of ours vs KNeighborsClassifier(algorithm="brute"), and its speed;
- blobs-64 faiss.Flat: `train` through the entrypoint from recordIO files; memory of 2 server workers.
Wall times are medians (builds of --repeats, requests of max(--repeats, 21) rounds); a request ratio is the
median over rounds of FAISS's time / ours in that round (this machine's speed drifts by up to 1.7x within
seconds, and a round's runs are adjacent); CPU times are means (the server's workers from /proc, FAISS's
child from process_time). About 10 minutes on 2 busy cores (IVFPQ builds of 60,000 x 784 take 15 s each).
Usage: bench_knn.py [--rows N,N,...] [--rows784 N,N,...] [--repeats R] [--sets blobs-64,digits-784] [--index-types ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import REPO, free_port, report
from knn_processes import THREADS, Anchor, K, Server
from results import Results, add_option

QUERIES = 1000
ROUNDS = 21  # request rounds: the median of 9 paired ratios still moved by 0.1 between runs here
RECORDIO = "application/x-recordio-protobuf"
INDEX_TYPES = ("faiss.Flat", "faiss.IVFFlat", "faiss.IVFPQ")


def blobs(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(rows + QUERIES, n_features=64, centers=100, cluster_std=6.0, random_state=0)
    return x[:rows].astype(np.float32), y[:rows].astype(np.float32), x[rows:].astype(np.float32), y[rows:]


def digits784(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from scipy.ndimage import shift, zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)

    def augment(images: np.ndarray, labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        pick = rng.integers(0, len(images), count)
        moved = np.stack([shift(images[i], rng.uniform(-0.7, 0.7, 2), order=1) for i in pick])
        big = zoom(moved, (1, 3.5, 3.5), order=1) + rng.normal(0, 0.8, (count, 28, 28))
        return big.reshape(count, 784).astype(np.float32), labels[pick].astype(np.float32)

    x, y = augment(digits.images[:1497], digits.target[:1497], rows)
    q, qy = augment(digits.images[1497:], digits.target[1497:], QUERIES)
    return x, y, q, qy


def hyperparameters(x: np.ndarray, index_type: str, rows: int) -> dict[str, str]:
    return {"feature_dim": str(x.shape[1]), "k": str(K), "predictor_type": "classifier", "sample_size": str(rows),
            "index_type": index_type}


def csv_body(q: np.ndarray) -> bytes:
    """Rows as a client writes float32 values: shortest text (0.12345679, not 0.12345679104328156)."""
    return "\n".join(",".join(row) for row in q.astype(str).tolist()).encode()


def build_ours(x: np.ndarray, y: np.ndarray, hp: dict[str, str]):
    from algorithms.knn.algorithm import Knn
    from algorithms.knn.hyperparameters import KnnHyperparameters
    from common.hyperparameters import parse_hyperparameters

    return Knn.fit(x, y, np.arange(len(x)), parse_hyperparameters(KnnHyperparameters, hp))


def build_faiss(x: np.ndarray, factory: str, metric: int):
    import faiss

    index = faiss.index_factory(x.shape[1], factory, metric)
    if not index.is_trained:
        index.train(x)
    index.add(x)
    return index


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def bench_index(results: Results, name: str, data: tuple, index_type: str, repeats: int, tmp: Path, port: int
                ) -> list:
    import faiss

    from common.data.recordio_writer import encode_dense

    x, y, q, qy = data
    hp = hyperparameters(x, index_type, len(x))
    builds: dict[str, list[tuple[float, float]]] = {"ours build": [], "faiss build": []}
    model = build_ours(x, y, hp)
    factory, metric = model.meta.index["factory"], model.index.metric_type
    for run in range(repeats):  # interleaved, in alternating order
        for which in ("ours build", "faiss build") if run % 2 else ("faiss build", "ours build"):
            cpu, started = time.process_time(), time.perf_counter()
            built = build_ours(x, y, hp) if which == "ours build" else build_faiss(x, factory, metric)
            builds[which].append((time.perf_counter() - started, time.process_time() - cpu))
            del built
    base = tmp / f"{name}-{index_type}"
    (base / "model").mkdir(parents=True)
    model.save(base / "model")
    exact = faiss.IndexFlatL2(x.shape[1])
    exact.add(x)
    truth = exact.search(q, K)[1]
    recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(model.neighbors(q)[1], truth)]))
    np.save(tmp / "queries.npy", q)
    nprobe = model.meta.nprobe
    csv, proto = csv_body(q), encode_dense(q)
    server, anchor = Server(base, port), Anchor(base / "model" / "model_algo-1", tmp / "queries.npy", nprobe)
    runs: dict[str, list[tuple[float, float]]] = {"csv": [], "proto": [], "faiss": []}
    try:
        server.invoke(csv, "text/csv", "application/json")
        contenders = {"faiss": anchor.timed_search,
                      "csv": lambda: server.timed_invoke(csv, "text/csv", "application/json"),
                      "proto": lambda: server.timed_invoke(proto, RECORDIO, RECORDIO)}
        order = list(contenders)
        for run in range(max(repeats, ROUNDS)):  # each goes first in turn
            for key in order[run % 3:] + order[:run % 3]:
                runs[key].append(contenders[key]())
                time.sleep(0.05)  # FAISS's OpenMP threads spin for ~8 ms of CPU after a search: not on the next one
    finally:
        server.stop()
        anchor.stop()
    wall = {key: statistics.median(r[0] for r in values) for key, values in {**builds, **runs}.items()}
    cpu = {key: sum(r[1] for r in values) / len(values) for key, values in {**builds, **runs}.items()}

    def versus(ours: str, theirs: str, queries: bool) -> str:
        cpu_ratio = f"CPU {cpu[ours]:6.3f} / {cpu[theirs]:6.3f} s = {cpu[ours] / max(cpu[theirs], 1e-9):4.2f}x"
        if queries:  # the ratio of each round's pair (seconds apart), then the median: the machine's speed drifts
            paired = statistics.median(t[0] / o[0] for o, t in zip(runs[ours], runs[theirs]))
            return (f"{QUERIES / wall[ours]:7.0f} / {QUERIES / wall[theirs]:7.0f} q/s, paired ratio "
                    f"{paired:4.2f}x; {cpu_ratio}")
        return f"{wall[ours]:7.3f} / {wall[theirs]:7.3f} s = {wall[ours] / wall[theirs]:4.2f}x; {cpu_ratio}"

    size = {"data": name, "rows": len(x), "cols": x.shape[1]}
    results.add("knn", f"{index_type}: build", **size, ours=wall["ours build"], unit="s",
                anchor=f"FAISS index_factory {factory}", anchor_value=wall["faiss build"])
    results.add("knn", f"{index_type}: recall@{K} vs exact search", **size, ours=recall, unit="recall")
    for key, label in (("csv", "CSV -> JSON"), ("proto", "recordIO")):
        paired = statistics.median(t[0] / o[0] for o, t in zip(runs[key], runs["faiss"]))
        results.add("knn", f"{index_type}: /invocations {label}, {QUERIES} queries", **size, ours=QUERIES / wall[key],
                    unit="q/s", anchor="FAISS index.search, clean process", anchor_value=QUERIES / wall["faiss"],
                    ratio=paired, index_type=index_type, request=label, recall=recall)
    rows = [
        (f"{index_type} index", f"{factory}, nprobe {nprobe}; CSV request body {len(csv) / 1e6:.1f} MB"),
        (f"{index_type} build ours / FAISS", versus("ours build", "faiss build", False)),
        (f"{index_type} recall@{K} vs exact", f"{recall:.4f}"),
        (f"{index_type} /invocations CSV->JSON / FAISS", versus("csv", "faiss", True)),
        (f"{index_type} /invocations recordIO / FAISS", versus("proto", "faiss", True)),
    ]
    if index_type == "faiss.Flat":
        rows += accuracy_rows(results, size, model, data, repeats)
    return rows


def accuracy_rows(results: Results, size: dict, model, data: tuple, repeats: int) -> list:
    from sklearn.neighbors import KNeighborsClassifier

    x, y, q, qy = data
    ours = np.mean(model.predict_labels(q)[0] == qy)
    sklearn = KNeighborsClassifier(K, algorithm="brute", n_jobs=THREADS).fit(x, y)
    theirs = np.mean(sklearn.predict(q) == qy)
    seconds = statistics.median(timed(lambda: sklearn.predict(q)) for _ in range(repeats))
    results.add("knn", "faiss.Flat: classifier accuracy", **size, ours=float(ours), unit="accuracy",
                anchor="sklearn KNeighborsClassifier(brute)", anchor_value=float(theirs))
    return [("faiss.Flat accuracy ours / sklearn brute", f"{ours:.4f} / {theirs:.4f} (vote ties: ours nearest, "
                                                         "sklearn smallest label)"),
            ("sklearn brute KNeighborsClassifier.predict", f"{QUERIES / seconds:9.0f} q/s")]


def bench_entrypoint(results: Results, data: tuple, repeats: int, tmp: Path, port: int) -> list:
    from common.data.recordio_writer import encode_dense
    from tools.local import entrypoint_env, write_job

    x, y, q, _ = data
    files = []
    for i, rows in enumerate(np.array_split(np.arange(len(x)), 4)):
        path = tmp / f"part-{i}.rec"
        path.write_bytes(encode_dense(x[rows], y[rows]))
        files.append(path)
    times = []
    for run in range(repeats + 1):  # the first run warms the caches
        base = tmp / f"train-{run}"
        write_job(base, hyperparameters(x, "faiss.Flat", len(x)), {"train": (files, None)})
        started = time.perf_counter()
        process = subprocess.run([sys.executable, "-m", "common.entrypoint", "train"],
                                 env=entrypoint_env("knn", base), stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
        if process.returncode:
            raise SystemExit((base / "output" / "failure").read_text())
    server = Server(tmp / "train-0", port, workers=2)
    try:
        for _ in range(4):
            server.invoke(csv_body(q), "text/csv", "application/json")
        memory = server.worker_memory()
    finally:
        server.stop()
    results.add("knn", "faiss.Flat: train via entrypoint (4 recordIO files)", data="blobs-64", rows=len(x),
                cols=x.shape[1], ours=statistics.median(times[1:]), unit="s")
    return [("faiss.Flat train via entrypoint (4 recordIO files)", f"{statistics.median(times[1:]):7.2f} s"),
            (f"2 server workers, {(tmp / 'train-0' / 'model' / 'model_algo-1').stat().st_size / 1e6:.0f} MB index",
             "; ".join(memory))]


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--rows", "20000,100000", "20000,100000", help="rows of blobs-64, one run per size")
    add_option(parser, "--rows784", "60000", "10000", help="rows of digits-784, one run per size")
    add_option(parser, "--repeats", "3", "2", kind=int, help="builds per side; requests run max(this, 21) rounds")
    parser.add_argument("--sets", default="blobs-64,digits-784", help="comma-separated data sets to run")
    parser.add_argument("--index-types", default=",".join(INDEX_TYPES), help="comma-separated index types")
    args = parser.parse_args()
    results = Results("knn", ("faiss-cpu", "scikit-learn"), **vars(args))
    sets, index_types = args.sets.split(","), args.index_types.split(",")
    import faiss

    faiss.omp_set_num_threads(THREADS)
    print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores; other work on the machine skews the figures)")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for name, make, sizes in (("blobs-64", blobs, args.rows), ("digits-784", digits784, args.rows784)):
            if name not in sets:
                continue
            for count in sizes:
                data = make(count)
                x = data[0]
                work = tmp / f"{name}-{count}"
                work.mkdir()
                rows = []
                for index_type in index_types:
                    rows += bench_index(results, name, data, index_type, args.repeats, work, free_port())
                if name == "blobs-64" and "faiss.Flat" in index_types:
                    rows += bench_entrypoint(results, data, args.repeats, work, free_port())
                report(f"k-NN {name}: {x.shape[0]:,} x {x.shape[1]} ({x.nbytes / 1e6:.0f} MB float32), {QUERIES} "
                       f"queries, k={K}, {THREADS} FAISS threads both sides, median of {args.repeats}", rows)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
    print(f"load average after: {os.getloadavg()[0]:.1f}")
