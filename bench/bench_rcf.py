"""RCF: ours against krcf (AWS's RCF Rust core, Python binding) and rrcf (pure Python), side by side.

All forests: 100 trees x 256 samples. Data:
  synthetic  100,000 x 8: five Gaussian clusters plus 1 % uniform anomalies planted in the same box
  shuttle    49,097 x 9: river's shipped Statlog Shuttle (ODDS cast, 7 % anomalies), no download
Quality: ROC AUC of the scores against the labels, every model trained unsupervised on all rows
(anomalies included) and scoring all rows. krcf streams the rows (shuffled once, the same order for
all) with update(), then scores them; ours samples the same rows and builds the trees. rrcf builds its
100 trees from random 256-row samples and scores with insert + codisp + forget (its documented streaming
use); being pure Python it is timed and scored on a small prefix only (--rrcf-rows), said in the output.
Speed: ours through `/invocations` (gunicorn, the image's server, 2 workers) in CSV batches of 1,000 rows
from 2 keep-alive clients, against krcf's score-then-update rate on the same rows (one core: it has no
batch API) and its score-only rate. Training: ours on 1,000,000 x 8 rows through the entrypoint (process
start to exit, recordIO file read included) and in process; krcf's time for 1M updates is extrapolated
from its measured update rate (said in the output).
A forest's AUC moves by a few 1e-4 with its seed, so both sides are also scored over --seeds seeds.
Usage: bench_rcf.py [--rows N] [--train-rows N,N,...] [--rrcf-rows N] [--seeds N]
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
from benchlib import REPO, report
from results import Results, add_option
from sklearn.metrics import roc_auc_score

from algorithms.rcf.forest import Forest, Trees
from algorithms.rcf.sampling import sample_stream
from common.cluster.collective import Collective
from common.data.recordio_writer import encode_dense
from tests.integration.helpers import free_port, train
from tools.local import run_entrypoint, write_job

TREES, SAMPLES = 100, 256


def synthetic(rows: int, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = rng.uniform(-5, 5, (5, dim))
    normal = centers[rng.integers(0, 5, rows)] + rng.standard_normal((rows, dim))
    labels = rng.random(rows) < 0.01
    normal[labels] = rng.uniform(-8, 8, (int(labels.sum()), dim))
    return normal.astype(np.float32), labels


def shuttle() -> tuple[np.ndarray, np.ndarray]:
    import river.datasets

    path = Path(river.datasets.__file__).parent / "shuttle.csv.gz"
    with gzip.open(path, "rt") as text:
        table = np.loadtxt(text, delimiter=",", skiprows=1)
    return table[:, :-1].astype(np.float32), table[:, -1] == 1


def ours_fit(x: np.ndarray, seed: int = 0) -> tuple[Forest, float]:
    started = time.perf_counter()
    batches = (x[i:i + 1000] for i in range(0, len(x), 1000))
    samples = sample_stream(batches, TREES, SAMPLES, x.shape[1], Collective(), seed * 1000)
    forest = Forest(Trees.build(samples.per_tree, [seed * 1000 + t for t in range(TREES)]),
                    {"feature_dim": x.shape[1], "num_samples_per_tree": SAMPLES})
    return forest, time.perf_counter() - started


def krcf_forest(dim: int, seed: int = 1):  # noqa: ANN201 (krcf has no type stubs)
    import krcf

    return krcf.RandomCutForest({"dimensions": dim, "shingle_size": 1, "num_trees": TREES, "sample_size": SAMPLES,
                                 "output_after": 1, "random_seed": seed, "parallel_execution_enabled": False})


def seeded_aucs(x: np.ndarray, labels: np.ndarray, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC of ours and of krcf for seeds 1..seeds-1 (seed 0 is the timed run): one seed is noise-sized."""
    ours, theirs = [], []
    rows = x.astype(np.float64)
    for seed in range(1, seeds):
        ours.append(roc_auc_score(labels, ours_fit(x, seed)[0].score(x)))
        forest = krcf_forest(x.shape[1], seed + 1)
        for point in rows:
            forest.update(point)
        theirs.append(roc_auc_score(labels, [forest.score(point) for point in rows]))
    return np.array(ours), np.array(theirs)


def krcf_run(x: np.ndarray) -> dict[str, float | np.ndarray]:
    forest = krcf_forest(x.shape[1])
    rows = x.astype(np.float64)
    started = time.perf_counter()
    for point in rows:
        forest.score(point)
        forest.update(point)
    score_update = time.perf_counter() - started
    started = time.perf_counter()
    scores = np.array([forest.score(point) for point in rows])
    score_only = time.perf_counter() - started
    fresh = krcf_forest(x.shape[1])
    started = time.perf_counter()
    for point in rows:
        fresh.update(point)
    return {"score_update_rate": len(rows) / score_update, "score_rate": len(rows) / score_only,
            "update_rate": len(rows) / (time.perf_counter() - started), "scores": scores}


def rrcf_run(x: np.ndarray, prefix: int) -> tuple[np.ndarray, float]:
    import rrcf

    rng = np.random.default_rng(2)
    trees = [rrcf.RCTree(x[rng.choice(len(x), SAMPLES, replace=False)].astype(np.float64), random_state=t)
             for t in range(TREES)]
    scores = np.zeros(prefix)
    started = time.perf_counter()
    for i, point in enumerate(x[:prefix].astype(np.float64)):
        for tree in trees:
            tree.insert_point(point, index="q")
            scores[i] += tree.codisp("q") / TREES
            tree.forget_point("q")
    return scores, prefix / (time.perf_counter() - started)


def serve_rate(x: np.ndarray, workdir: Path) -> float:
    """Points per second scored through /invocations, CSV batches of 1,000 rows, 2 clients."""
    base = workdir / "serve"
    data = workdir / "serve.rec"
    data.write_bytes(encode_dense(x))
    write_job(base, {"feature_dim": str(x.shape[1]), "num_trees": str(TREES), "num_samples_per_tree": str(SAMPLES)},
              {"train": ([data], None)}, distribution="ShardedByS3Key")
    if train("rcf", base).returncode != 0:
        raise SystemExit((base / "output" / "failure").read_text())
    port = free_port()
    server = run_entrypoint("serve", "rcf", base, {"SAGEMAKER_BIND_TO_PORT": str(port),
                                                   "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    url = f"http://127.0.0.1:{port}/invocations"
    bodies = ["\n".join(",".join(f"{v:.7g}" for v in row) for row in x[i:i + 1000]) for i in range(0, len(x), 1000)]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url.replace("invocations", "ping"), timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow on a loaded machine
                time.sleep(0.2)
            if time.monotonic() > deadline:
                raise SystemExit("the server never answered /ping")

        def client(part: list[str]) -> None:
            with requests.Session() as session:
                for body in part:
                    response = session.post(url, data=body, headers={"Content-Type": "text/csv"})
                    if response.status_code != 200:
                        raise SystemExit(response.text)

        client(bodies[:4])  # warm both workers' connections
        threads = [threading.Thread(target=client, args=(bodies[k::2],)) for k in range(2)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return len(x) / (time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--rows", "100000", "20000", kind=int, help="rows of the synthetic quality set")
    add_option(parser, "--train-rows", "50000,1000000", "50000,1000000", help="rows of the training runs, one per size")
    add_option(parser, "--rrcf-rows", "300", kind=int)
    add_option(parser, "--seeds", "5", "3", kind=int, help="forests per side for the mean ROC AUC")
    args = parser.parse_args()
    results = Results("rcf", ("krcf", "rrcf", "river", "scikit-learn"), **vars(args))
    from algorithms.rcf import ALGORITHM

    ALGORITHM.warm_up_kernels()
    for name, (x, labels) in {"synthetic": synthetic(args.rows), "shuttle (river)": shuttle()}.items():
        order = np.random.default_rng(1).permutation(len(x))
        x, labels = x[order], labels[order]
        forest, fit_seconds = ours_fit(x)
        started = time.perf_counter()
        ours = forest.score(x)
        ours_rate = len(x) / (time.perf_counter() - started)
        theirs = krcf_run(x)
        prefix = min(args.rrcf_rows, len(x))
        rrcf_scores, rrcf_rate = rrcf_run(x, prefix)
        head = labels[:prefix]
        auc_ours, auc_krcf = roc_auc_score(labels, ours), roc_auc_score(labels, theirs["scores"])
        more_ours, more_krcf = seeded_aucs(x, labels, args.seeds)
        all_ours, all_krcf = np.append(more_ours, auc_ours), np.append(more_krcf, auc_krcf)
        rows = [
            ("data", f"{len(x):,} x {x.shape[1]}, {labels.mean():.1%} anomalies; forests {TREES} trees x {SAMPLES}"),
            ("ROC AUC ours / krcf, seed 0", f"{auc_ours:.4f} / {auc_krcf:.4f}  (diff {auc_ours - auc_krcf:+.4f})"),
            (f"ROC AUC ours / krcf, mean ± sd of {len(all_ours)} seeds",
             f"{all_ours.mean():.4f} ± {all_ours.std():.4f} / {all_krcf.mean():.4f} ± {all_krcf.std():.4f}"
             f"  (diff {all_ours.mean() - all_krcf.mean():+.4f}; min {all_ours.min():.4f} / {all_krcf.min():.4f})"),
            (f"ROC AUC on first {prefix} rows ours / krcf / rrcf",
             " / ".join(f"{roc_auc_score(head, s[:prefix]):.4f}" if head.any() and not head.all() else "n/a"
                        for s in (ours, theirs["scores"], rrcf_scores))),
            ("median score ours / krcf", f"{np.median(ours):.3f} / {np.median(theirs['scores']):.3f}"),
            ("fit ours (sample + build, in process)", f"{fit_seconds:.3f} s"),
            ("score ours in process (numba, 2 threads)", f"{ours_rate:,.0f} points/s"),
            ("krcf score+update / score only (1 core)",
             f"{theirs['score_update_rate']:,.0f} / {theirs['score_rate']:,.0f} points/s"),
            (f"rrcf insert+codisp+forget ({prefix}-row prefix)", f"{rrcf_rate:,.1f} points/s"),
            ("ratio ours in process / krcf score+update", f"{ours_rate / theirs['score_update_rate']:.1f}x"),
            ("ratio ours in process / rrcf", f"{ours_rate / rrcf_rate:,.0f}x"),
        ]
        if name == "synthetic":
            krcf_rate = float(theirs["score_update_rate"])
            krcf_update_rate = float(theirs["update_rate"])
        report(f"RCF quality and scoring: {name}", rows)
        size = {"data": name, "rows": len(x), "cols": x.shape[1]}
        prefix_aucs = {side: roc_auc_score(head, s[:prefix]) if head.any() and not head.all() else None
                       for side, s in (("ours", ours), ("krcf", theirs["scores"]), ("rrcf", rrcf_scores))}
        results.add("rcf", f"ROC AUC, mean of {len(all_ours)} seeds", **size, ours=float(all_ours.mean()), unit="AUC",
                    anchor="krcf (AWS RCF core)", anchor_value=float(all_krcf.mean()), ours_sd=float(all_ours.std()),
                    anchor_sd=float(all_krcf.std()), prefix_rows=prefix, prefix_aucs=prefix_aucs)
        results.add("rcf", "score in process", **size, ours=ours_rate, unit="points/s",
                    anchor="krcf score+update (1 core)", anchor_value=float(theirs["score_update_rate"]))
        results.add("rcf", f"score in process ({prefix}-row prefix for rrcf)", **size, ours=ours_rate,
                    unit="points/s", anchor="rrcf insert+codisp+forget", anchor_value=rrcf_rate)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        x, _ = synthetic(args.rows)
        served = x[:50_000]
        rate = serve_rate(served, workdir)
        results.add("rcf", "/invocations, CSV batches of 1,000, 2 workers, 2 clients", data="synthetic",
                    rows=len(served), cols=8, ours=rate, unit="points/s", anchor="krcf score+update (1 core)",
                    anchor_value=krcf_rate)
        lines = [
            ("/invocations, CSV batches of 1,000, 2 workers, 2 clients",
             f"{rate:,.0f} points/s ({len(served):,} rows)"),
            ("krcf score+update on the same synthetic rows", f"{krcf_rate:,.0f} points/s"),
            ("ratio ours through HTTP / krcf", f"{rate / krcf_rate:.1f}x"),
        ]
        for train_rows in args.train_rows:
            big, _ = synthetic(train_rows)
            data = workdir / "big.rec"
            data.write_bytes(encode_dense(big))
            base = workdir / f"big-{train_rows}"
            write_job(base, {"feature_dim": "8", "num_trees": str(TREES), "num_samples_per_tree": str(SAMPLES)},
                      {"train": ([data], None)}, distribution="ShardedByS3Key")
            started = time.perf_counter()
            result = train("rcf", base)
            entry_seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise SystemExit(result.stdout + result.stderr)
            _, fit_seconds = ours_fit(big)
            krcf_seconds = len(big) / krcf_update_rate
            lines += [
                (f"train {len(big):,} x 8 ours, entrypoint (recordIO {data.stat().st_size / 2**20:.0f} MB)",
                 f"{entry_seconds:.2f} s"),
                (f"train {len(big):,} x 8 ours, in process (no parsing)", f"{fit_seconds:.2f} s"),
                (f"train {len(big):,} x 8 krcf, extrapolated from its update rate",
                 f"{krcf_seconds:.0f} s (not run: rows / its update-only rate)"),
                ("ratio krcf / ours (entrypoint)", f"{krcf_seconds / entry_seconds:.0f}x"),
            ]
            size = {"data": "synthetic", "rows": len(big), "cols": 8}
            anchor = "krcf updates, extrapolated from its rate"
            results.add("rcf", "train: entrypoint from recordIO", **size, ours=entry_seconds, unit="s", anchor=anchor,
                        anchor_value=krcf_seconds)
            results.add("rcf", "train: in process (no parsing)", **size, ours=fit_seconds, unit="s", anchor=anchor,
                        anchor_value=krcf_seconds)
        report("RCF serving and training", lines)


if __name__ == "__main__":
    print(f"repo {REPO}")
    main()
