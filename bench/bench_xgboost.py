"""XGBoost: ours end to end vs the xgboost library on data it loaded itself; the loader alone; serving a 1-row CSV.

Data (--datasets): `higgs`, a HIGGS-style synthetic --rows x --features (default 28) binary set, values
`[-]d.dddddd`; `digits`, scikit-learn's bundled 8x8 digits (1,797 real rows x 64, read from its csv.gz
without importing scikit-learn) tiled to --rows, label digit >= 5, its libsvm holding only the non-zero pixels.
Each is written once as CSV (label first) and as libsvm (0-based indices, so both loaders see the same columns).

Loader alone: ours (`dmatrix_io.channel_dmatrix`: the File-mode readers of algorithm mode, parallel_read.py,
plus data.dmatrix, the same code the entrypoint runs) vs `xgb.DMatrix("<file>?format=<csv|libsvm>...")`,
XGBoost's own text loader, both in one warm process, run in turn, medians of --repeats (ours also split into
parse and DMatrix). Training: ours is `python -m common.entrypoint train` (process start to exit: config, file
parsing, DMatrix, boosting, model write). Anchor: a fresh `python` that builds the DMatrix with XGBoost's own
loader and calls `xgb.train` with the same parameters. Both hist, all cores, --rounds rounds, train-set metric
printed every round; run in turn (A B A B ...), medians of --repeats. Both start with scikit-learn hidden, as in
the image, which does not install it.

Serving: our server (gunicorn, 1 worker) answering 1-row CSV -> CSV over one keep-alive connection,
p50/p99/req/s, next to a bare in-process `booster.inplace_predict` on the same row (the floor), and
the design's anchor (Flask + gunicorn + xgboost, same client: p50 1.64 ms, p99 2.45 ms, 440 req/s).
Usage: bench_xgboost.py [--rows N,N,...] [--features F] [--datasets higgs,digits] [--rounds R] [--repeats K]
       [--skip-training] [--skip-loader] [--skip-serving]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import importlib.util
import json
import os
import resource
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

FEATURES = 50  # serving
BLOCK_ROWS = 100_000  # data is written in blocks of rows
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


def make_data(root: Path, dataset: str, rows: int, features: int) -> tuple[Path, Path, int]:
    """(CSV path, libsvm path, feature columns), written block by block with array operations (no formatting
    loop): HIGGS-style `[-]d.dddddd` values, or the digits' integers 0-16."""
    csv_path, libsvm_path = root / f"{dataset}.csv", root / f"{dataset}.libsvm"
    rng = np.random.default_rng(0)
    if dataset == "digits":
        spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("--datasets digits needs scikit-learn's bundled digits.csv.gz")
        table = np.loadtxt(gzip.open(Path(spec.submodule_search_locations[0]) / "datasets/data/digits.csv.gz"),
                           delimiter=",", dtype=np.int64)
        pixels, target, features = table[:, :-1], table[:, -1], table.shape[1] - 1
    with open(csv_path, "wb") as csv, open(libsvm_path, "wb") as libsvm:
        for first in range(0, rows, BLOCK_ROWS):
            n = min(BLOCK_ROWS, rows - first)
            if dataset == "digits":
                take = np.arange(first, first + n) % len(pixels)
                tokens, keep_csv = _integers(pixels[take])
                keep_libsvm, label = pixels[take] != 0, (target[take] >= 5).astype(np.uint8)
            else:
                x = rng.normal(0, 1.2, size=(n, features))
                label = ((x[:, 0] + x[:, 1] - x[:, 2] + rng.normal(0, 1, n)) > 0).astype(np.uint8)
                tokens, keep_csv = _decimals(x)
                keep_libsvm = None
            csv.write(_lines(label, tokens, keep_csv, None, b","))
            libsvm.write(_lines(label, tokens, keep_csv, keep_libsvm, b" "))
    return csv_path, libsvm_path, features


def _decimals(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`-d.dddddd` bytes per value (n, d, 9) and which of them to keep (the sign of non-negative values goes)."""
    ints = np.minimum(np.rint(np.abs(x) * 1e6), 9_999_999).astype(np.int64)
    tokens = np.empty(x.shape + (9,), np.uint8)
    tokens[..., 0], tokens[..., 2] = 45, 46
    tokens[..., 1] = ints // 1_000_000 + 48
    for k in range(6):
        tokens[..., 3 + k] = ints // 10 ** (5 - k) % 10 + 48
    keep = np.ones(tokens.shape, bool)
    keep[..., 0] = x < 0
    return tokens, keep


def _integers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values 0-99 as (n, d, 2) bytes and which to keep (a leading zero goes)."""
    tokens = np.stack([values // 10 + 48, values % 10 + 48], axis=-1).astype(np.uint8)
    keep = np.ones(tokens.shape, bool)
    keep[..., 0] = values >= 10
    return tokens, keep


def _lines(label: np.ndarray, tokens: np.ndarray, keep_bytes: np.ndarray, keep_values: np.ndarray | None,
           separator: bytes) -> bytes:
    """Label, then per column `[j:]value` (libsvm when separator is a space) joined by separator, a newline
    per row; keep_bytes drops bytes inside a value, keep_values whole (libsvm) tokens and their separator."""
    rows, columns = tokens.shape[:2]
    parts, masks = [np.stack([label + 48, np.full(rows, separator[0], np.uint8)], 1)], [None]
    for j in range(columns):
        column_keep = None if keep_values is None else keep_values[:, j:j + 1]
        if separator == b" ":
            prefix = np.broadcast_to(np.frombuffer(f"{j}:".encode(), np.uint8), (rows, len(str(j)) + 1))
            parts.append(prefix)
            masks.append(None if column_keep is None else np.broadcast_to(column_keep, prefix.shape))
        value_keep = keep_bytes[:, j]
        parts.append(tokens[:, j])
        masks.append(value_keep if column_keep is None else value_keep & column_keep)
        parts.append(np.full((rows, 1), 10 if j == columns - 1 else separator[0], np.uint8))
        masks.append(None if column_keep is None or j == columns - 1 else column_keep)
    body = np.concatenate(parts, axis=1)
    mask = np.concatenate([np.ones(part.shape, bool) if m is None else m for part, m in zip(parts, masks)], axis=1)
    return body[mask].tobytes()


def ours(root: Path, data: Path, content_type: str, rounds: int) -> tuple[float, float]:
    base = root / f"job-{data.name}"  # a channel per file: one job must not read another's data
    write_job(base, {"num_round": str(rounds), "objective": "binary:logistic", "tree_method": "hist"},
              {"train": ([], content_type)})
    channel = base / "input" / "data" / "train"
    channel.mkdir(parents=True, exist_ok=True)
    link = channel / data.name
    if not link.exists():
        link.symlink_to(data)
    (elapsed, cpu), result = _timed([sys.executable, "-c", OURS, "train"], env=entrypoint_env("xgboost", base))
    if result.returncode:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    return elapsed, cpu


def anchor(data: Path, fmt: str, rounds: int) -> tuple[float, float]:
    times, result = _timed([sys.executable, "-c", ANCHOR, str(data), fmt, str(rounds)])
    if result.returncode:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    return times


def _timed(command: list[str], **options: object) -> tuple[tuple[float, float], subprocess.CompletedProcess]:
    """((wall seconds, CPU seconds: user + system of the child), result). CPU time is what a loaded machine
    (other jobs on the same cores) changes least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, **options)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (elapsed, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime), result


# One warm process times both loaders in turn: ours as the entrypoint loads (File mode, parallel_read.py,
# data.dmatrix) and XGBoost's own text loader. Prints one JSON line of medians.
LOADERS = NO_SKLEARN + """
import json, statistics, time
import numpy as np
import xgboost as xgb
from pathlib import Path
from algorithms.xgboost import data as data_module
from algorithms.xgboost.dmatrix_io import _PathChannel
from common.data.content_types import MediaType
path, fmt, repeats = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
media = MediaType.parse("text/" + fmt)
uri = f"{path}?format=csv&label_column=0" if fmt == "csv" else f"{path}?format=libsvm"
def ours():
    started = time.perf_counter()
    data = data_module.load(_PathChannel(path, media, False), media, False)
    parsed = time.perf_counter()
    matrix = data_module.dmatrix(data)
    return parsed - started, time.perf_counter() - parsed, matrix
def theirs():
    started = time.perf_counter()
    matrix = xgb.DMatrix(uri)
    return time.perf_counter() - started, matrix
_, _, a = ours()
_, b = theirs()
assert (a.num_row(), a.num_col(), a.num_nonmissing()) == (b.num_row(), b.num_col(), b.num_nonmissing())
times = {"parse": [], "dmatrix": [], "ours": [], "xgboost": []}
for _ in range(repeats):
    parse, build, a = ours()
    del a
    times["parse"].append(parse); times["dmatrix"].append(build); times["ours"].append(parse + build)
    took, b = theirs()
    del b
    times["xgboost"].append(took)
print(json.dumps({k: statistics.median(v) for k, v in times.items()}))
"""


def bench_loader(results: Results, name: str, rows: int, cols: int, fmt: str, path: Path, repeats: int) -> dict:
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", LOADERS, str(path), fmt, str(repeats)], cwd=REPO,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if result.returncode:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    medians = json.loads(result.stdout.strip().splitlines()[-1])
    results.add("xgboost", f"load {fmt} to a DMatrix: parse + DMatrix, warm process", data=name, rows=rows,
                cols=cols, ours=medians["ours"], unit="s", anchor=f"xgboost DMatrix('{fmt} file')",
                anchor_value=medians["xgboost"], parse_s=medians["parse"], dmatrix_s=medians["dmatrix"])
    return medians


def bench_training(results: Results, root: Path, dataset: str, rows: int, features: int, rounds: int,
                   repeats: int, loader: bool, training: bool) -> None:
    started = time.perf_counter()
    csv_path, libsvm_path, cols = make_data(root, dataset, rows, features)
    name = "synthetic binary, HIGGS-style" if dataset == "higgs" else "sklearn digits (tiled), digit >= 5"
    print(f"data: {dataset} {rows:,} x {cols}; CSV {csv_path.stat().st_size / 1e6:.0f} MB, libsvm "
          f"{libsvm_path.stat().st_size / 1e6:.0f} MB, written in {time.perf_counter() - started:.1f} s", flush=True)
    files = (("csv", csv_path, "text/csv"), ("libsvm", libsvm_path, "text/libsvm"))
    if loader:
        rows_out = []
        for fmt, path, _ in files:
            m = bench_loader(results, name, rows, cols, fmt, path, repeats)
            split = f"parse {m['parse']:.3f} s + DMatrix {m['dmatrix']:.3f} s"
            rows_out += [(f"{fmt}: ours ({split})", f"{m['ours']:.3f} s"),
                         (f"{fmt}: xgboost DMatrix('{fmt} file')", f"{m['xgboost']:.3f} s"),
                         (f"{fmt}: ratio ours/xgboost (goal <= 1.0)", f"{m['ours'] / m['xgboost']:.2f}x")]
        report(f"loader alone, {dataset} {rows:,} x {cols}, warm process, medians of {repeats}", rows_out)
    if not training:
        return
    medians = {}
    for fmt, path, content_type in files:
        times: dict[str, list[float]] = {"ours": [], "anchor": [], "ours_cpu": [], "anchor_cpu": []}
        for _ in range(repeats):
            for who, (wall, cpu) in (("ours", ours(root, path, content_type, rounds)),
                                     ("anchor", anchor(path, fmt, rounds))):
                times[who].append(wall)
                times[f"{who}_cpu"].append(cpu)
        medians[fmt] = {k: statistics.median(v) for k, v in times.items()}
        results.add("xgboost", f"train from {fmt}: entrypoint, parse + {rounds} rounds", data=name,
                    rows=rows, cols=cols, ours=medians[fmt]["ours"], unit="s",
                    anchor=f"xgboost DMatrix('{fmt} file') + xgb.train", anchor_value=medians[fmt]["anchor"],
                    ours_cpu_s=medians[fmt]["ours_cpu"], anchor_cpu_s=medians[fmt]["anchor_cpu"])
    rows_out = []
    for fmt, r in medians.items():
        rows_out += [(f"{fmt}: ours (entrypoint train, parse + train)", f"{r['ours']:.2f} s"),
                     (f"{fmt}: xgboost DMatrix('{fmt} file') + xgb.train", f"{r['anchor']:.2f} s"),
                     (f"{fmt}: ratio ours/anchor (goal <= 1.1)", f"{r['ours'] / r['anchor']:.2f}x"),
                     (f"{fmt}: CPU s ours / anchor (user + system)",
                      f"{r['ours_cpu']:.2f} / {r['anchor_cpu']:.2f} = {r['ours_cpu'] / r['anchor_cpu']:.2f}x")]
    report(f"end to end, {dataset} {rows:,} x {cols}, {rounds} rounds hist, medians of {repeats}", rows_out)


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
    add_option(parser, "--rows", "50000,200000,1000000", "50000", help="rows of the training data, one run per size")
    add_option(parser, "--features", "28", kind=int, help="columns of the higgs data set")
    add_option(parser, "--datasets", "higgs,digits", "higgs", kind=lambda text: text.split(","),
               help="higgs (synthetic) and/or digits (scikit-learn's, tiled)")
    add_option(parser, "--rounds", "10", kind=int)
    add_option(parser, "--repeats", "3", kind=int)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-loader", action="store_true")
    parser.add_argument("--skip-serving", action="store_true")
    args = parser.parse_args()
    results = Results("xgboost", ("xgboost-cpu", "xgboost"), **vars(args))
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    with tempfile.TemporaryDirectory() as tmp:
        if not (args.skip_training and args.skip_loader):
            for rows in args.rows:
                for dataset in args.datasets:
                    root = Path(tmp) / f"{dataset}-{rows}"
                    root.mkdir()
                    bench_training(results, root, dataset, rows, args.features, args.rounds, args.repeats,
                                   not args.skip_loader, not args.skip_training)
                    shutil.rmtree(root)
        if not args.skip_serving:
            bench_serving(results, Path(tmp))


if __name__ == "__main__":
    main()
