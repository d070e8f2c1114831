"""Start-up: the fixed cost of every image's process, next to `python -c "import numpy"` on the same machine.

Per image: a tiny training job (1,000 rows x 10, the image's natural content type) through the real
entrypoint, process wall time with a warm numba cache (the first run fills it), median of interleaved runs
with the two anchors (`python -c "import numpy"`, `python -c "import numba"`); then `serve` with one worker
on that model: time from the process start to the first /ping 200, and the resident memory of the gunicorn
master and of its worker then (psutil). No container: the same Python as the virtualenv.
Usage: bench_startup.py [--rows N] [--repeats R] [--images kmeans,pca,...]
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
from tools.local import entrypoint_env, write_job

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


def jobs(rows: int) -> dict[str, tuple[str, dict[str, str], Callable[[Path], dict]]]:
    """image -> (content type, hyperparameters, the channels made in a folder)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, COLS)).astype(np.float32)
    label = (x[:, 0] > 0).astype(np.float32)
    target = (x @ rng.standard_normal(COLS)).astype(np.float32)
    dim = str(COLS)

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


def run_process(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    return elapsed


def train_command(image: str, base: Path) -> Callable[[], float]:
    env = entrypoint_env(image, base)

    def run() -> float:
        clean(base)
        return run_process([sys.executable, "-m", "common.entrypoint", "train"], env)

    return run


def _ping(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False


def serve_once(image: str, base: Path) -> tuple[float, float, float]:
    """(seconds to the first /ping 200, master RSS MB, worker RSS MB) of `serve` with one worker."""
    port = free_port()
    env = entrypoint_env(image, base, {"SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    if image == "sklearn":
        (base / "model" / "code").mkdir(exist_ok=True)
        (base / "model" / "code" / "inference.py").write_text("# the image's default handlers\n")
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "common.entrypoint", "serve"], env=env, cwd=REPO,
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
        master = psutil.Process(server.pid)
        workers = master.children()
        return (ready, master.memory_info().rss / 2**20,
                max((w.memory_info().rss for w in workers), default=0) / 2**20)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--rows", "1000", kind=int, help="rows of each tiny training job")
    add_option(parser, "--repeats", "5", kind=int, help="interleaved runs per process (median)")
    add_option(parser, "--images", "kmeans,pca,knn,rcf,fm,xgboost,lightgbm,catboost,sklearn",
               kind=lambda text: [name for name in text.split(",") if name], help="images to measure")
    args = parser.parse_args()
    results = Results("startup", ("gunicorn", "flask", "scipy", "xgboost", "lightgbm", "catboost", "faiss-cpu",
                                  "scikit-learn"), **vars(args))
    specs = {name: spec for name, spec in jobs(args.rows).items() if name in args.images}
    anchors = {"import numpy": [sys.executable, "-c", "import numpy"],
               "import numba": [sys.executable, "-c", "import numba"]}
    with tempfile.TemporaryDirectory() as tmp:
        runs: dict[str, Callable[[], float]] = {
            name: (lambda c=command: run_process(c)) for name, command in anchors.items()}
        bases = {}
        for image, (_, hyperparameters, channels) in specs.items():
            folder = Path(tmp) / image
            folder.mkdir()
            bases[image] = folder / "ml"
            write_job(bases[image], hyperparameters, channels(folder))
            runs[image] = train_command(image, bases[image])
        for run in runs.values():  # the first run of each fills numba's cache and the bytecode
            run()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):  # interleaved: a change in the machine's load hits every process alike
            for name, run in runs.items():
                times[name].append(run())
        wall = {name: statistics.median(values) for name, values in times.items()}
        served = {}
        for image in specs:
            trials = [serve_once(image, bases[image]) for _ in range(3)]
            served[image] = tuple(statistics.median(t[i] for t in trials) for i in range(3))

    numpy_s, numba_s = wall["import numpy"], wall["import numba"]
    print(f"\n== start-up: tiny training job ({args.rows:,} x {COLS}), process wall time, median of "
          f"{args.repeats} interleaved runs, warm cache; serve with 1 worker (median of 3)")
    print(f"  anchors: python -c 'import numpy' {numpy_s:.3f} s, python -c 'import numba' {numba_s:.3f} s "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    header = f"  {'image':<9} {'data':<18} {'train s':>8} {'/numpy':>7} {'/numba':>7} {'ping s':>7} " \
             f"{'master MB':>10} {'worker MB':>10}"
    print(header)
    for image, (content_type, _, _) in specs.items():
        ready, master, worker = served[image]
        print(f"  {image:<9} {content_type:<18} {wall[image]:>8.3f} {wall[image] / numpy_s:>6.1f}x "
              f"{wall[image] / numba_s:>6.2f}x {ready:>7.2f} {master:>10.0f} {worker:>10.0f}")
        size = {"data": content_type, "rows": args.rows, "cols": COLS}
        results.add(image, "train: tiny job, process wall time", **size, ours=wall[image], unit="s",
                    anchor="python -c 'import numpy'", anchor_value=numpy_s, import_numba_s=numba_s)
        results.add(image, "serve: first /ping 200", **size, ours=ready, unit="s",
                    anchor="python -c 'import numpy'", anchor_value=numpy_s)
        results.add(image, "serve: master RSS", **size, ours=master, unit="MB")
        results.add(image, "serve: worker RSS", **size, ours=worker, unit="MB")
    print(f"  written to {results.path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
