"""Start-up: the fixed cost of every image's process, next to `python -c "import numpy"` on the same machine.

Per image: a tiny training job (1,000 rows x 10, the image's natural content type) through the real
entrypoint, process wall and CPU time with a warm numba cache (the first run fills it), medians of runs
interleaved with the two anchors' (`python -c "import numpy"`, `python -c "import numba"`); then `serve` with
one worker on that model: time from the process start to the first /ping 200, and the memory of the gunicorn
master and of its worker then (RSS each, and PSS of the two). No container: the virtualenv's Python.
--baseline DIR times another copy of the repository (the code before a change) interleaved with this one.
Usage: bench_startup.py [--rows N] [--repeats R] [--images kmeans,pca,...] [--baseline DIR]
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
from benchlib import REPO, free_port
from results import Results, add_option

from common.data.recordio_writer import encode_dense
from tools.local import entrypoint_env, stop_server, write_job

COLS = 10
RECORDIO = "application/x-recordio-protobuf"
# The sklearn image runs the user's script: the smallest one that trains and saves what the default model_fn loads.
SKLEARN_SCRIPT = """\
import os
import joblib
import numpy as np
from sklearn.linear_model import LinearRegression

data = np.loadtxt(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "train.csv"), delimiter=",", ndmin=2)
joblib.dump(LinearRegression().fit(data[:, 1:], data[:, 0]), os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
"""


def _csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    np.savetxt(path, np.column_stack([y, x]), delimiter=",", fmt="%.6g")
    return path


def _recordio(path: Path, x: np.ndarray, y: np.ndarray | None = None) -> Path:
    path.write_bytes(encode_dense(x, y))
    return path


def jobs(rows: int, cols: int = COLS) -> dict[str, tuple[str, dict[str, str], Callable[[Path], dict]]]:
    """image -> (content type, hyperparameters, the channels made in a folder)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    label = (x[:, 0] > 0).astype(np.float32)
    target = (x @ rng.standard_normal(cols)).astype(np.float32)
    dim = str(cols)

    def sklearn(tmp: Path) -> dict:
        (tmp / "code").mkdir(exist_ok=True)
        (tmp / "code" / "train.py").write_text(SKLEARN_SCRIPT)
        return {"train": ([_csv(tmp / "train.csv", x, target)], "text/csv"),
                "code": ([tmp / "code" / "train.py"], None)}

    return {
        "kmeans": (RECORDIO, {"k": "3", "feature_dim": dim, "mini_batch_size": "500"},
                   lambda tmp: {"train": ([_recordio(tmp / "train.rec", x)], None)}),
        "pca": (RECORDIO, {"feature_dim": dim, "num_components": "2", "mini_batch_size": "500"},
                lambda tmp: {"train": ([_recordio(tmp / "train.rec", x)], None)}),
        "knn": (RECORDIO, {"k": "3", "feature_dim": dim, "sample_size": str(rows), "predictor_type": "classifier"},
                lambda tmp: {"train": ([_recordio(tmp / "train.rec", x, label)], None)}),
        "rcf": (RECORDIO, {"feature_dim": dim, "num_trees": "50", "num_samples_per_tree": "64"},
                lambda tmp: {"train": ([_recordio(tmp / "train.rec", x)], None)}),
        "fm": (RECORDIO, {"feature_dim": dim, "num_factors": "2", "predictor_type": "regressor", "epochs": "1",
                          "mini_batch_size": "500"},
               lambda tmp: {"train": ([_recordio(tmp / "train.rec", x, target)], None)}),
        "xgboost": ("text/csv", {"num_round": "5", "objective": "binary:logistic", "max_depth": "2"},
                    lambda tmp: {"train": ([_csv(tmp / "train.csv", x, label)], "text/csv")}),
        "lightgbm": ("text/csv", {"num_boost_round": "5", "early_stopping_rounds": "0"},
                     lambda tmp: {"train": ([_csv(tmp / "train.csv", x, label)], "text/csv")}),
        "catboost": ("text/csv", {"iterations": "5"},
                     lambda tmp: {"training": ([_csv(tmp / "train.csv", x, label)], "text/csv")}),
        "sklearn": ("text/csv (script)", {}, sklearn),
    }


def clean(base: Path) -> None:
    """What one run writes, so every run is a fresh job (no checkpoint to resume from)."""
    for name in ("model", "output", "checkpoints", "code"):
        shutil.rmtree(base / name, ignore_errors=True)


def run_process(command: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the process and the children it waited for). CPU time
    barely moves with the machine's load, wall time does: both are reported."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"{command} failed ({process.returncode}):\n{errors.read().decode()[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def tree_env(image: str, base: Path, tree: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The entrypoint's environment, running the code of `tree` (this checkout, or --baseline's)."""
    return entrypoint_env(image, base, {"PYTHONPATH": str(tree), **(extra or {})})


def train_command(image: str, base: Path, tree: Path) -> Callable[[], tuple[float, float]]:
    env = tree_env(image, base, tree)

    def run() -> tuple[float, float]:
        clean(base)
        return run_process([sys.executable, "-m", "common.entrypoint", "train"], env, tree)

    return run


def _ping(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False


def serve_once(image: str, base: Path, tree: Path) -> tuple[float, float, float, float]:
    """Of `serve` with one worker: seconds to the first /ping 200, then the master's and the worker's RSS and
    the two processes' PSS (pages they share counted once between them), in MB."""
    port = free_port()
    env = tree_env(image, base, tree, {"SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    if image == "sklearn":
        (base / "model" / "code").mkdir(exist_ok=True)
        (base / "model" / "code" / "inference.py").write_text("# the image's default handlers\n")
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "common.entrypoint", "serve"], env=env, cwd=tree,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = started + 120
        while not _ping(port):
            if server.poll() is not None:
                raise SystemExit(f"{image} server exited:\n{server.stderr.read().decode()[-3000:]}")
            if time.perf_counter() > deadline:
                raise SystemExit(f"{image} server never answered /ping")
            time.sleep(0.01)
        ready = time.perf_counter() - started
        processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children()]
        rss = [process.memory_info().rss / 2**20 for process in processes]
        pss = sum(process.memory_full_info().pss for process in processes) / 2**20
        return ready, rss[0], max(rss[1:], default=0.0), pss
    finally:
        stop_server(server)


SHOWN = {"application/x-recordio-protobuf": "recordIO", "text/csv": "CSV", "text/csv (script)": "CSV script"}


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--rows", "1000", kind=int, help="rows of each tiny training job")
    add_option(parser, "--repeats", "5", kind=int, help="interleaved runs per process (median)")
    add_option(parser, "--images", "kmeans,pca,knn,rcf,fm,xgboost,lightgbm,catboost,sklearn",
               kind=lambda text: [name for name in text.split(",") if name], help="images to measure")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another copy of the repository (e.g. before a change), timed interleaved with this one")
    args = parser.parse_args()
    results = Results("startup", ("gunicorn", "flask", "scipy", "xgboost", "lightgbm", "catboost", "faiss-cpu",
                                  "scikit-learn"), **{**vars(args), "baseline": str(args.baseline or "")})
    specs = {name: spec for name, spec in jobs(args.rows).items() if name in args.images}
    trees = {"": REPO, **({" (baseline)": args.baseline.resolve()} if args.baseline else {})}
    anchors = {"import numpy": [sys.executable, "-c", "import numpy"],
               "import numba": [sys.executable, "-c", "import numba"]}
    with tempfile.TemporaryDirectory() as tmp:
        runs: dict[str, Callable[[], tuple[float, float]]] = {
            name: (lambda c=command: run_process(c)) for name, command in anchors.items()}
        bases = {}
        for image, (_, hyperparameters, channels) in specs.items():
            for suffix, tree in trees.items():
                folder = Path(tmp) / (image + suffix.strip(" ()"))
                folder.mkdir()
                bases[image + suffix] = folder / "ml"
                write_job(bases[image + suffix], hyperparameters, channels(folder))
                runs[image + suffix] = train_command(image, bases[image + suffix], tree)
        for run in runs.values():  # the first run of each fills numba's cache and the bytecode
            run()
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(args.repeats):  # interleaved: a change in the machine's load hits every process alike
            for name, run in runs.items():
                times[name].append(run())
        wall = {name: statistics.median(t[0] for t in values) for name, values in times.items()}
        cpu = {name: statistics.median(t[1] for t in values) for name, values in times.items()}
        served = {}
        for image in specs:
            trials: dict[str, list[tuple[float, float, float, float]]] = {suffix: [] for suffix in trees}
            for _ in range(3):
                for suffix, tree in trees.items():
                    trials[suffix].append(serve_once(image, bases[image + suffix], tree))
            for suffix, values in trials.items():
                served[image + suffix] = tuple(statistics.median(t[i] for t in values) for i in range(4))

    numpy_s, numba_s, numpy_cpu = wall["import numpy"], wall["import numba"], cpu["import numpy"]
    print(f"\n== start-up: tiny training job ({args.rows:,} x {COLS}), process wall and CPU time, median of "
          f"{args.repeats} interleaved runs, warm cache; serve with 1 worker (median of 3)")
    print(f"  anchors: python -c 'import numpy' {numpy_s:.3f} s ({numpy_cpu:.3f} s CPU), "
          f"python -c 'import numba' {numba_s:.3f} s ({cpu['import numba']:.3f} s CPU); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  {'image':<20} {'data':<10} {'train s':>8} {'/numpy':>7} {'CPU s':>6} {'/numpy':>7} {'ping s':>7} "
          f"{'master MB':>10} {'worker MB':>10} {'PSS MB':>7}")
    for image, (content_type, _, _) in specs.items():
        for suffix in trees:
            name = image + suffix
            ready, master, worker, pss = served[name]
            print(f"  {name:<20} {SHOWN[content_type]:<10} {wall[name]:>8.3f} {wall[name] / numpy_s:>6.1f}x "
                  f"{cpu[name]:>6.3f} {cpu[name] / numpy_cpu:>6.1f}x {ready:>7.2f} {master:>10.0f} {worker:>10.0f} "
                  f"{pss:>7.0f}")
        size = {"data": content_type, "rows": args.rows, "cols": COLS}
        extra = {}
        if args.baseline:
            before = image + " (baseline)"
            extra["baseline"] = {"train_s": wall[before], "train_cpu_s": cpu[before], "ping_s": served[before][0],
                                 "master_mb": served[before][1], "worker_mb": served[before][2],
                                 "server_pss_mb": served[before][3]}
        results.add(image, "train: tiny job, process wall time", **size, ours=wall[image], unit="s",
                    anchor="python -c 'import numpy'", anchor_value=numpy_s, import_numba_s=numba_s, **extra)
        results.add(image, "train: tiny job, process CPU time", **size, ours=cpu[image], unit="s",
                    anchor="python -c 'import numpy'", anchor_value=numpy_cpu, import_numba_s=cpu["import numba"])
        results.add(image, "serve: first /ping 200", **size, ours=served[image][0], unit="s",
                    anchor="python -c 'import numpy'", anchor_value=numpy_s)
        results.add(image, "serve: master RSS", **size, ours=served[image][1], unit="MB")
        results.add(image, "serve: worker RSS", **size, ours=served[image][2], unit="MB")
        results.add(image, "serve: master + worker PSS", **size, ours=served[image][3], unit="MB")
    print(f"  written to {results.path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
