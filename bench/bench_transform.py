"""Batch transform at scale: a CSV of --transform-mb MB (default 1024) through `run_transform` vs in process.

Ours: `tools.transform.run_transform` exactly as `sm-local transform` runs it: the image's server (gunicorn,
a worker per core), SplitType=Line, BatchStrategy=MultiRecord, 6 MB mini-batches, AssembleWith=Line,
MaxConcurrentTransforms from /execution-parameters, the .out written to disk. Timed from the first
/execution-parameters to the last byte written (the server's start is reported apart).
Anchor: the same model loaded in this process answering the same 6 MB mini-batches (the transform's own
splitter) one after another: reader.parse + predict + encode, no HTTP, nothing written.
Models (--algorithms: any built-in image, default xgboost,kmeans) are trained afresh through the entrypoint on
20,000 rows of the same kind of data, 20 float features (bench_startup.py's jobs, bigger models for xgboost,
kmeans and knn). The input is CSV (`%.6f`), but for fm, which reads no CSV requests (as AWS's): recordIO-protobuf
split by record (SplitType=RecordIO). Inputs are written to /tmp/bench_transform/ (reused while there:
--keep-input leaves them). Every answer is text/csv, one line per row.
Usage: bench_transform.py [--transform-mb MB] [--algorithms xgboost,kmeans,...] [--keep-input]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_startup import jobs
from benchlib import report
from results import Results, add_option

from common.algorithm import load_algorithm
from common.data.recordio_writer import encode_dense
from common.serving.endpoint import load_endpoint
from tools.local import entrypoint_env, write_job
from tools.transform import run_transform
from tools.transform_job import InputFile, TransformJob, mini_batches

FEATURES = 20
PAYLOAD_MB = 6
WORK = Path(tempfile.gettempdir()) / "bench_transform"
HYPERPARAMETERS = {  # instead of bench_startup's tiny models
    "xgboost": {"num_round": "50", "max_depth": "6", "objective": "reg:squarederror"},
    "kmeans": {"k": "10", "feature_dim": str(FEATURES), "mini_batch_size": "1000"},
    "knn": {"k": "10", "feature_dim": str(FEATURES), "sample_size": "2000", "predictor_type": "classifier"},
}
CSV, RECORDIO = "text/csv", "application/x-recordio-protobuf"
REQUESTS = {"fm": (RECORDIO, "RecordIO")}  # content type and SplitType; the others: CSV by line


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _rows(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, FEATURES)).astype(np.float32) * 3


def _csv(rows: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savetxt(out, rows, fmt="%.6f", delimiter=",")
    return out.getvalue()


def write_input(megabytes: int, content_type: str = CSV) -> tuple[Path, int]:
    """A file of about `megabytes` MB: one block of about 8 MB of random rows, repeated (whole rows)."""
    rows = _rows((8 << 20) // (FEATURES * 10), seed=1)
    if content_type == RECORDIO:
        path, block = WORK / f"input-{megabytes}MB.rec", encode_dense(rows)
    else:
        path, block = WORK / f"input-{megabytes}MB.csv", _csv(rows)
    block_rows = len(rows)
    copies = max(1, round((megabytes << 20) / len(block)))
    if not path.exists() or path.stat().st_size != copies * len(block):
        WORK.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            for _ in range(copies):
                out.write(block)
    return path, copies * block_rows


def train(algorithm: str) -> Path:
    base = WORK / f"model-{algorithm}"
    shutil.rmtree(base, ignore_errors=True)
    folder = WORK / f"train-{algorithm}"
    folder.mkdir(parents=True, exist_ok=True)
    _, hyperparameters, channels = jobs(20_000, FEATURES)[algorithm]
    write_job(base, HYPERPARAMETERS.get(algorithm, hyperparameters), channels(folder))
    done = subprocess.run([sys.executable, "-m", "common.entrypoint", "train"], env=entrypoint_env(algorithm, base),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training {algorithm} failed:\n{done.stdout}\n{done.stderr}")
    return base / "model"


def in_process(algorithm: str, model_dir: Path, path: Path) -> tuple[float, int]:
    """Seconds and rows: the same mini-batches answered by the model loaded here, one after another."""
    os.environ["SAGEMAKER_BATCH"] = "true"  # as the transform's server has it (XGBoost's batch output)
    endpoint = load_endpoint(load_algorithm(algorithm), model_dir)
    endpoint.warm_up()
    content_type, split_type = REQUESTS.get(algorithm, (CSV, "Line"))
    job = TransformJob(content_type=content_type, split_type=split_type, batch_strategy="MultiRecord",
                       max_payload_mb=PAYLOAD_MB)
    rows, started = 0, time.perf_counter()
    for batch in mini_batches(InputFile(path, path.name), job):
        endpoint.answer(batch.payload, content_type, CSV)
        rows += batch.records
    return time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--transform-mb", "1024", "64", kind=int, help="size of the CSV to transform, MB")
    add_option(parser, "--algorithms", "xgboost,kmeans", kind=_names, help="models to transform with")
    parser.add_argument("--keep-input", action="store_true", help="leave the CSV in /tmp/bench_transform")
    args = parser.parse_args()
    results = Results("transform", ("xgboost", "gunicorn"), transform_mb=args.transform_mb,
                      algorithms=args.algorithms, payload_mb=PAYLOAD_MB)
    inputs = {}
    for algorithm in args.algorithms:
        content_type, split_type = REQUESTS.get(algorithm, (CSV, "Line"))
        if content_type not in inputs:
            inputs[content_type] = write_input(args.transform_mb, content_type)
        path, rows = inputs[content_type]
        size_mb = path.stat().st_size / (1 << 20)
        kind = "recordIO-protobuf" if content_type == RECORDIO else "CSV"
        data = f"random float32 {kind}, {size_mb:,.0f} MB"
        model_dir = train(algorithm)
        output = WORK / f"output-{algorithm}"
        shutil.rmtree(output, ignore_errors=True)
        started = time.perf_counter()
        result = run_transform(algorithm, model_dir, path, output, content_type=content_type,
                               split_type=split_type, accept=CSV, batch_strategy="MultiRecord",
                               max_payload_mb=PAYLOAD_MB, assemble_with="Line")
        total = time.perf_counter() - started
        out_lines = sum(chunk.count(b"\n") for chunk in _chunks(output / (path.name + ".out")))
        if result.records != rows or out_lines != rows:
            raise SystemExit(f"{algorithm}: {result.records:,} records posted, {out_lines:,} lines out, of {rows:,}")
        shutil.rmtree(output, ignore_errors=True)
        alone, alone_rows = in_process(algorithm, model_dir, path)
        ours_rows, alone_rate = rows / result.seconds, alone_rows / alone
        ours_mb, alone_mb = size_mb / result.seconds, size_mb / alone
        settings = result.settings
        case = (f"batch transform: {kind}, SplitType={split_type}, {PAYLOAD_MB} MB mini-batches, AssembleWith=Line, "
                f"MaxConcurrentTransforms={settings['MaxConcurrentTransforms']}")
        anchor = "in process: parse + predict + encode, same mini-batches, no HTTP"
        results.add(algorithm, case + ": rows/s", data=data, rows=rows, cols=FEATURES, ours=ours_rows,
                    unit="rows/s", anchor=anchor, anchor_value=alone_rate, seconds=result.seconds,
                    seconds_with_server_start=total, mini_batches=result.mini_batches)
        results.add(algorithm, case + ": MB/s", data=data, rows=rows, cols=FEATURES, ours=ours_mb, unit="MB/s",
                    anchor=anchor, anchor_value=alone_mb)
        report(f"{algorithm}: {size_mb:,.0f} MB {kind}, {rows:,} rows, {result.mini_batches:,} mini-batches", [
            ("transform (run_transform)", f"{result.seconds:.1f} s  {ours_rows:,.0f} rows/s  {ours_mb:,.1f} MB/s"
                                          f"  (+{total - result.seconds:.1f} s server start and stop)"),
            ("in process", f"{alone:.1f} s  {alone_rate:,.0f} rows/s  {alone_mb:,.1f} MB/s"),
            ("ratio transform / in process", f"{ours_rows / alone_rate:.2f}"),
        ])
    if not args.keep_input:
        for path, _ in inputs.values():
            path.unlink()


def _chunks(path: Path, size: int = 8 << 20):
    with open(path, "rb") as stream:
        while chunk := stream.read(size):
            yield chunk


if __name__ == "__main__":
    main()
