"""XGBoost: ours end to end vs the xgboost library on data it loaded itself; serving a 1-row CSV.

Training: a --rows x 50 binary dataset (default 1,000,000) written once as CSV (label first) and as
libsvm. Ours: `python -m common.entrypoint train` (process start to exit: config, file parsing, DMatrix,
boosting, model write). Anchor: a fresh `python` that builds `xgb.DMatrix("<file>?format=<csv|libsvm>...")`
with XGBoost's own text loader and calls `xgb.train` with the same parameters. Both hist, all cores,
--rounds rounds, train-set metric printed every round; run in turn (A B A B ...), medians of --repeats.
Both start with scikit-learn hidden, as in the image, which does not install it.

Serving: our server (gunicorn, 1 worker) answering 1-row CSV -> CSV over one keep-alive connection,
p50/p99/req/s, next to a bare in-process `booster.inplace_predict` on the same row (the floor), and
the design's anchor (Flask + gunicorn + xgboost, same client: p50 1.64 ms, p99 2.45 ms, 440 req/s).
Usage: bench_xgboost.py [--rows N,N,...] [--rounds R] [--repeats K]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_serving import _wait
from benchlib import REPO, free_port, report
from results import Results, add_option

from tools.local import entrypoint_env, write_job

FEATURES = 50
# Both contenders start without scikit-learn, as in the image (xgboost imports it, 1.5 s, when installed).
NO_SKLEARN = "import sys; sys.modules['sklearn'] = None; "
OURS = NO_SKLEARN + "import runpy; runpy.run_module('common.entrypoint', run_name='__main__')"
ANCHOR = NO_SKLEARN + """
import time, xgboost as xgb
path, fmt, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
uri = f"{path}?format=csv&label_column=0" if fmt == "csv" else f"{path}?format=libsvm"
d = xgb.DMatrix(uri)
xgb.train({"objective": "binary:logistic", "tree_method": "hist"}, d, rounds, evals=[(d, "train")])
"""


def make_data(root: Path, rows: int) -> tuple[Path, Path]:
    """Fixed-width text built with array operations: `d.ddd` values, so no formatting loop."""
    rng = np.random.default_rng(0)
    ints = rng.integers(0, 10000, size=(rows, FEATURES), dtype=np.int32)
    x = ints / 1000.0
    label = ((x[:, 0] + x[:, 1] - x[:, 2] + rng.normal(0, 2, rows)) > 5).astype(np.uint8)
    digits = np.stack([ints // 1000, ints // 100 % 10, ints // 10 % 10, ints % 10], axis=-1).astype(np.uint8) + 48
    value = np.concatenate([digits[..., :1], np.full((rows, FEATURES, 1), 46, np.uint8), digits[..., 1:]], axis=-1)
    label_bytes = (label + 48)[:, None]
    comma = np.full((rows, FEATURES, 1), 44, np.uint8)
    csv = np.concatenate([value, comma], axis=-1).reshape(rows, -1)
    csv[:, -1] = 10
    csv_path, libsvm_path = root / "train.csv", root / "train.libsvm"
    csv_path.write_bytes(np.concatenate([label_bytes, np.full((rows, 1), 44, np.uint8), csv], axis=1).tobytes())
    columns = [label_bytes]
    for j in range(FEATURES):
        prefix = np.frombuffer(f" {j}:".encode(), np.uint8)
        columns += [np.broadcast_to(prefix, (rows, len(prefix))), value[:, j]]
    columns.append(np.full((rows, 1), 10, np.uint8))
    libsvm_path.write_bytes(np.concatenate(columns, axis=1).tobytes())
    return csv_path, libsvm_path


def ours(root: Path, data: Path, content_type: str, rounds: int) -> float:
    base = root / f"job-{content_type.replace('/', '-')}"
    write_job(base, {"num_round": str(rounds), "objective": "binary:logistic", "tree_method": "hist"},
              {"train": ([], content_type)})
    channel = base / "input" / "data" / "train"
    channel.mkdir(parents=True, exist_ok=True)
    link = channel / data.name
    if not link.exists():
        link.symlink_to(data)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", OURS, "train"], env=entrypoint_env("xgboost", base),
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    return elapsed


def anchor(data: Path, fmt: str, rounds: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", ANCHOR, str(data), fmt, str(rounds)], check=True, capture_output=True)
    return time.perf_counter() - started


def bench_training(results: Results, root: Path, rows: int, rounds: int, repeats: int) -> None:
    started = time.perf_counter()
    csv_path, libsvm_path = make_data(root, rows)
    print(f"data: {rows:,} x {FEATURES}; CSV {csv_path.stat().st_size / 1e6:.0f} MB, libsvm "
          f"{libsvm_path.stat().st_size / 1e6:.0f} MB, written in {time.perf_counter() - started:.1f} s", flush=True)
    medians = {}
    for fmt, path, content_type in (("csv", csv_path, "text/csv"), ("libsvm", libsvm_path, "text/libsvm")):
        times: dict[str, list[float]] = {"ours": [], "anchor": []}
        for _ in range(repeats):
            times["ours"].append(ours(root, path, content_type, rounds))
            times["anchor"].append(anchor(path, fmt, rounds))
        medians[fmt] = {k: statistics.median(v) for k, v in times.items()}
        results.add("xgboost", f"train from {fmt}: entrypoint, parse + {rounds} rounds", data="synthetic binary",
                    rows=rows, cols=FEATURES, ours=medians[fmt]["ours"], unit="s",
                    anchor=f"xgboost DMatrix('{fmt} file') + xgb.train", anchor_value=medians[fmt]["anchor"])
    rows_out = []
    for fmt, r in medians.items():
        rows_out += [(f"{fmt}: ours (entrypoint train, parse + train)", f"{r['ours']:.2f} s"),
                     (f"{fmt}: xgboost DMatrix('{fmt} file') + xgb.train", f"{r['anchor']:.2f} s"),
                     (f"{fmt}: ratio ours/anchor (goal <= 1.1)", f"{r['ours'] / r['anchor']:.2f}x")]
    report(f"end to end, {rows:,} x {FEATURES}, {rounds} rounds hist, medians of {repeats}", rows_out)


def bench_serving(results: Results, root: Path) -> None:
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, FEATURES)).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(x, label=x[:, 0] > 0), 100)
    base = root / "serve"
    (base / "model").mkdir(parents=True)
    (base / "model" / "xgboost-model").write_bytes(bytes(booster.save_raw("ubj")))
    row = ",".join(f"{v:.4f}" for v in x[0]).encode()
    port = free_port()
    env = {**entrypoint_env("xgboost", base), "SAGEMAKER_BIND_TO_PORT": str(port),
           "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "common.entrypoint", "serve"], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(port)
        _load(port, row)
        runs = [_load(port, row) for _ in range(3)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    p50, p99, rps = (statistics.median(r[i] for r in runs) for i in range(3))
    booster.set_param({"nthread": 1})
    latencies = []
    for _ in range(3000):
        t0 = time.perf_counter()
        values = np.array(row.split(b","), dtype=np.float32)[None]
        (str(float(booster.inplace_predict(values)[0])) + "\n").encode()
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    bare = (latencies[1500] * 1e3, latencies[2970] * 1e3, 3000 / sum(latencies))
    size = {"data": "1-row CSV requests", "rows": 1, "cols": FEATURES}
    design = "Flask+gunicorn+xgboost, the design's figure (not run here)"
    results.add("xgboost", "serve 1-row CSV -> CSV: requests/s", **size, ours=rps, unit="req/s", anchor=design,
                anchor_value=440.0, p99_ms=p99)
    results.add("xgboost", "serve 1-row CSV -> CSV: p50 latency", **size, ours=p50, unit="ms", anchor=design,
                anchor_value=1.64)
    results.add("xgboost", "serve 1-row CSV -> CSV: p50 latency vs the floor", **size, ours=p50, unit="ms",
                anchor="bare booster.inplace_predict in process", anchor_value=bare[0])
    report("serving 1-row CSV -> CSV, 3000 keep-alive requests x 3 (median)", [
        ("ours p50 / p99 / req/s", f"{p50:.2f} ms / {p99:.2f} ms / {rps:.0f}"),
        ("bare inplace_predict in-process p50 / p99 / calls/s", f"{bare[0]:.3f} ms / {bare[1]:.3f} ms / {bare[2]:.0f}"),
        ("design anchor Flask+gunicorn+xgboost p50 / p99 / req/s", "1.64 ms / 2.45 ms / 440"),
        ("ratio ours/anchor req/s", f"{rps / 440:.2f}x"),
    ])


def _load(port: int, row: bytes, requests: int = 3000) -> tuple[float, float, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
    latencies = []
    started = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        connection.request("POST", "/invocations", body=row, headers=headers)
        connection.getresponse().read()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return latencies[requests // 2] * 1e3, latencies[int(requests * 0.99)] * 1e3, requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--rows", "50000,1000000", "50000,200000", help="rows of the training data, one run per size")
    add_option(parser, "--rounds", "10", kind=int)
    add_option(parser, "--repeats", "3", kind=int)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    results = Results("xgboost", ("xgboost-cpu", "xgboost"), **vars(args))
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_training:
            for rows in args.rows:
                root = Path(tmp) / f"rows-{rows}"
                root.mkdir()
                bench_training(results, root, rows, args.rounds, args.repeats)
                shutil.rmtree(root)
        bench_serving(results, Path(tmp))


if __name__ == "__main__":
    main()
