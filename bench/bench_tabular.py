"""LightGBM and CatBoost side by side: our image's entrypoint vs the library alone, then serving.

Training: one header-less CSV (target first, 8 numeric and 2 categorical columns, categorical_index.json),
no validation channel, so both sides hold out 20 % with `sample(frac=0.2, random_state=200)`.
  ours    `python -m common.entrypoint train` (reads, validates, trains, writes the native model)
  anchor  a fresh interpreter doing what a user does with the library alone: pandas.read_csv,
          the same hold-out, `lgb.train` / `CatBoostClassifier.fit` with the very same parameters
          (both with OMP_WAIT_POLICY=PASSIVE, which our image sets, and without importing scikit-learn),
          save_model.
Wall times of the whole processes, alternating ours/anchor, medians.

Serving: 1-row CSV -> JSON, sequential keep-alive requests, our gunicorn server (1 worker) vs an anchor
Flask app under the same gunicorn settings running JumpStart's inference recipe (pandas.read_csv, predict,
json.dumps); plus the library's own in-process 1-row predict as the floor.

    python bench/bench_tabular.py [--rows 50000,1000000] [--catboost-rows 50000,1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import REPO, free_port, report
from results import Results, add_option

from tools.local import entrypoint_env, write_job

ROW = b"0.5,-1.25,0.75,2.0,0.0,1.0,-0.5,0.25,17,3"
ANCHOR_TRAIN = r"""
import json, sys
sys.modules["sklearn"] = None  # as in our image: lightgbm would import scikit-learn (1.1 s) for nothing
import pandas as pd
path, kind, params, rounds, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
frame = pd.read_csv(path, header=None)
validation = frame.sample(frac=0.2, random_state=200)
train = frame.drop(validation.index)
cats = [8, 9]
if kind == "lightgbm":
    import lightgbm as lgb
    dtrain = lgb.Dataset(train.iloc[:, 1:], train.iloc[:, 0], categorical_feature=cats)
    dval = lgb.Dataset(validation.iloc[:, 1:], validation.iloc[:, 0], reference=dtrain)
    booster = lgb.train(params, dtrain, rounds, valid_sets=[dval, dtrain], valid_names=["val", "train"],
                        callbacks=[lgb.log_evaluation(1), lgb.early_stopping(10)])
    booster.save_model(out)
else:
    import catboost
    model = catboost.CatBoostClassifier(**params)
    model.fit(catboost.Pool(train.iloc[:, 1:], train.iloc[:, 0], cat_features=cats),
              eval_set=catboost.Pool(validation.iloc[:, 1:], validation.iloc[:, 0], cat_features=cats),
              use_best_model=True)
    model.save_model(out)
"""


def anchor_app() -> object:
    """gunicorn 'bench_tabular:anchor_app()': JumpStart's inference recipe around the library alone."""
    import pandas as pd
    from flask import Flask, Response, request

    kind, model_dir = os.environ["ANCHOR_KIND"], Path(os.environ["SAGEMAKER_BASE_DIR"]) / "model"
    if kind == "lightgbm":
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(model_dir / "model.txt"))

        def probabilities(frame: pd.DataFrame) -> np.ndarray:
            p = booster.predict(frame)
            return np.column_stack([1 - p, p])
    else:
        import catboost

        model = catboost.CatBoostClassifier()
        model.load_model(str(model_dir / "model"))

        def probabilities(frame: pd.DataFrame) -> np.ndarray:
            return model.predict_proba(frame)

    app = Flask("anchor")

    @app.post("/invocations")
    def invocations() -> Response:
        frame = pd.read_csv(io.BytesIO(request.get_data()), header=None)
        return Response(json.dumps({"probabilities": probabilities(frame).tolist()}), mimetype="application/json")

    @app.get("/ping")
    def ping() -> Response:
        return Response("", status=200)

    return app


def make_data(rows: int, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 8)).round(4).astype(np.float32)
    c1, c2 = rng.integers(0, 100, rows), rng.integers(0, 10, rows)
    logit = x[:, 0] - 0.5 * x[:, 1] + x[:, 2] * x[:, 3] + np.sin(c1 / 7.0) + (c2 == 3) - 0.2
    y = (rng.random(rows) < 1 / (1 + np.exp(-2 * logit))).astype(np.int8)
    columns = {"y": y, **{f"x{i}": x[:, i] for i in range(8)}, "c1": c1, "c2": c2}
    pacsv.write_csv(pa.table(columns), path, pacsv.WriteOptions(include_header=False))


def params_for(kind: str, hp: dict[str, str]) -> tuple[dict, int]:
    from common.hyperparameters import parse_hyperparameters

    if kind == "lightgbm":
        from algorithms.lightgbm.algorithm import LightGBM, _params

        parsed = parse_hyperparameters(LightGBM.Hyperparameters, hp)
        return _params(parsed, "classification", 2), parsed.num_boost_round
    from algorithms.catboost.algorithm import CatBoost, _params

    parsed = parse_hyperparameters(CatBoost.Hyperparameters, hp)
    return _params(parsed, "classification", 2), parsed.iterations


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    return time.perf_counter() - started


def bench_training(results: Results, kind: str, rows: int, hp: dict[str, str], repeats: int, tmp: Path
                   ) -> tuple[Path, list]:
    data = tmp / f"{kind}.csv"
    make_data(rows, data)
    index = tmp / "categorical_index.json"
    index.write_text('{"cat_index_list": [9, 10]}')
    base = tmp / kind / "ml"
    write_job(base, hp, {"train" if kind == "lightgbm" else "training": ([data, index], "text/csv")})
    params, rounds = params_for(kind, hp)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    ours = [sys.executable, "-m", "common.entrypoint", "train"]
    anchor = [sys.executable, "-c", ANCHOR_TRAIN, str(data), kind, json.dumps(params), str(rounds),
              str(tmp / f"{kind}-anchor.model")]
    times: dict[str, list[float]] = {"ours": [], "anchor": []}
    for _ in range(repeats):
        shutil.rmtree(base / "checkpoints", ignore_errors=True)  # or ours resumes from the last run's, finished
        times["ours"].append(timed(ours, entrypoint_env(kind, base)))
        times["anchor"].append(timed(anchor, env))
    mine, theirs = statistics.median(times["ours"]), statistics.median(times["anchor"])
    size = data.stat().st_size / 1e6
    results.add(kind, "train: entrypoint end to end", data="synthetic CSV, 8 numeric + 2 categorical", rows=rows,
                cols=10, ours=mine, unit="s", anchor=f"pandas.read_csv + {kind} alone", anchor_value=theirs)
    return base, [(f"{kind} train {rows:,} rows ({size:.0f} MB CSV), ours end to end", f"{mine:.2f} s"),
                  (f"{kind} train, anchor: pandas + {kind} alone", f"{theirs:.2f} s"),
                  (f"{kind} train ratio ours/anchor (goal <= 1.1)", f"{mine / theirs:.2f}x")]


def _wait(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on {port} did not start")


def _load(port: int, count: int) -> tuple[float, float, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "text/csv", "Accept": "application/json"}
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        connection.request("POST", "/invocations", body=ROW, headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            raise SystemExit(response.read().decode())
        response.read()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return latencies[len(latencies) // 2] * 1e3, latencies[int(len(latencies) * 0.99)] * 1e3, count / elapsed


def bench_serving(results: Results, kind: str, base: Path, requests: int, rounds: int) -> list:
    env = dict(entrypoint_env(kind, base), SAGEMAKER_MODEL_SERVER_WORKERS="1", ANCHOR_KIND=kind,
               OMP_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE")
    port, anchor_port = free_port(), free_port()
    commands = {port: [sys.executable, "-m", "common.entrypoint", "serve"],
                anchor_port: [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "4",
                              "-b", f"127.0.0.1:{anchor_port}", "--chdir", str(REPO / "bench"),
                              "bench_tabular:anchor_app()"]}
    servers = [subprocess.Popen(c, env=dict(env, SAGEMAKER_BIND_TO_PORT=str(p)), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p, c in commands.items()]
    runs: dict[int, list[tuple[float, float, float]]] = {p: [] for p in commands}
    try:
        for p in commands:
            _wait(p)
            _load(p, 200)
        for _ in range(rounds):
            for p in commands:
                runs[p].append(_load(p, requests))
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    ours, anchor = ([statistics.median(r[i] for r in runs[p]) for i in range(3)] for p in commands)
    floor = _library_floor(kind, base)
    size = {"data": "1-row CSV requests", "rows": 1, "cols": 10}
    flask = f"Flask + pandas + {kind} (JumpStart's recipe)"
    results.add(kind, "serve 1-row CSV -> JSON: requests/s", **size, ours=ours[2], unit="req/s", anchor=flask,
                anchor_value=anchor[2])
    results.add(kind, "serve 1-row CSV -> JSON: p50 latency", **size, ours=ours[0], unit="ms", anchor=flask,
                anchor_value=anchor[0])
    results.add(kind, "serve 1-row CSV -> JSON: p50 latency vs the floor", **size, ours=ours[0], unit="ms",
                anchor=f"{kind} 1-row predict in process", anchor_value=floor * 1e3)
    return [(f"{kind} serve 1 row, ours p50 / p99 / req/s", f"{ours[0]:.2f} ms / {ours[1]:.2f} ms / {ours[2]:.0f}"),
            (f"{kind} serve, anchor Flask+pandas+{kind}", f"{anchor[0]:.2f} ms / {anchor[1]:.2f} ms / {anchor[2]:.0f}"),
            (f"{kind} serve req/s ratio ours/anchor", f"{ours[2] / anchor[2]:.2f}x"),
            (f"{kind} library alone, 1-row predict in-process", f"{floor * 1e3:.3f} ms")]


def _library_floor(kind: str, base: Path) -> float:
    from benchlib import median_seconds

    from common.data.batch import Batch
    from common.serving.request import Options

    if kind == "lightgbm":
        from algorithms.lightgbm.algorithm import LightGBM as Model
    else:
        from algorithms.catboost.algorithm import CatBoost as Model  # type: ignore[assignment]
    model = Model.load(base / "model")
    row = np.array([[float(v) for v in ROW.split(b",")]], np.float32)
    predict = model.booster.predict if kind == "lightgbm" else None
    if predict is not None:
        return median_seconds(lambda: predict(row), repeats=500)
    return median_seconds(lambda: model.predict(Batch(row), Options()), repeats=500)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--rows", "50000,1000000", "50000,200000", help="LightGBM's training rows, one run per size")
    add_option(parser, "--catboost-rows", "50000,1000000", "50000,200000", help="CatBoost's, one run per size")
    add_option(parser, "--repeats", "3", kind=int)
    add_option(parser, "--requests", "2000", kind=int)
    args = parser.parse_args()
    results = Results("tabular", ("lightgbm", "catboost", "pandas", "flask"), **vars(args))
    lightgbm_hp = {"num_boost_round": "50", "verbosity": "0"}
    catboost_hp = {"iterations": "100", "learning_rate": "0.1", "verbose": "50"}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        rows = []
        for kind, sizes, hp in (("lightgbm", args.rows, lightgbm_hp), ("catboost", args.catboost_rows, catboost_hp)):
            for count in sizes:
                work = tmp / f"{kind}-{count}"
                work.mkdir()
                base, lines = bench_training(results, kind, count, hp, args.repeats, work)
                rows += lines
                (work / f"{kind}.csv").unlink()
            rows += bench_serving(results, kind, base, args.requests, 3)  # the model of the last size
    report(f"tabular: training (median of {args.repeats}, alternating) and serving (median of 3 x "
           f"{args.requests} requests); {os.cpu_count()} CPUs", rows)


if __name__ == "__main__":
    main()
