"""Throughput of our RecordIO-protobuf reader against the SageMaker SDK's `read_records`.

    .venv/bin/python bench/bench_recordio.py [--rows 10000,100000] [--dim 784] [--repeats 5]

Both read the same bytes: `rows` dense float32 records of `dim` features with a float32
label, written by our encoder (byte-identical to the SDK's `write_numpy_to_dense_tensor`).
The SDK only exists in the throwaway `.venv-sdk` (see tests/fixtures/make_sdk_recordio.py),
so it runs there in a subprocess; its time covers `read_records` plus turning each record
into a numpy row and label, as a user would. MB = 10^6 bytes; every figure is a median.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from results import Results, add_option  # noqa: E402

from common.data.recordio_reader import RecordIOReader, warm_up  # noqa: E402
from common.data.recordio_writer import encode_dense  # noqa: E402

SDK_PYTHON = REPO / ".venv-sdk" / "bin" / "python"
SDK_TIMEOUT_S = 600
SDK_PROGRAM = """
import io, os, statistics, sys, time
os.environ["SAGEMAKER_SUPPRESS_V2_WARNING"] = "1"
import numpy as np
from sagemaker.amazon.common import read_records

path, n_bytes, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "rb") as f:
    data = f.read(n_bytes)
times = []
for _ in range(repeats):
    stream = io.BytesIO(data)
    start = time.perf_counter()
    records = read_records(stream)
    features = np.stack([np.array(r.features["values"].float32_tensor.values, dtype=np.float32) for r in records])
    labels = np.array([r.label["values"].float32_tensor.values[0] for r in records], dtype=np.float32)
    times.append(time.perf_counter() - start)
print(len(records), features.shape[1], statistics.median(times))
"""


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(body: bytes, repeats: int, batch_rows: int) -> dict[str, float]:
    reader = RecordIOReader()
    warm_up()
    whole = median_seconds(lambda: reader.parse(body, "bench"), repeats)
    streamed = median_seconds(lambda: sum(len(b) for b in reader.batches(io.BytesIO(body), "bench", batch_rows)),
                              repeats)
    return {"parse": whole, "batches": streamed}


def sdk(path: Path, n_bytes: int, repeats: int) -> tuple[int, float]:
    """(records read, median seconds) of the SDK on the first n_bytes of the file."""
    done = subprocess.run([str(SDK_PYTHON), "-c", SDK_PROGRAM, str(path), str(n_bytes), str(repeats)],
                          capture_output=True, text=True, timeout=SDK_TIMEOUT_S, check=True)
    rows, _, seconds = done.stdout.splitlines()[-1].split()  # the SDK logs its config to stdout first
    return int(rows), float(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_option(parser, "--rows", "10000,100000", "10000,50000", help="records, one run per size")
    add_option(parser, "--dim", "784", kind=int)
    add_option(parser, "--repeats", "5", kind=int)
    parser.add_argument("--batch-rows", type=int, default=10_000, help="rows per batch when streaming")
    parser.add_argument("--sdk-rows", type=int, default=None,
                        help="time the SDK on only this many leading rows (if it is too slow) and compare MB/s")
    args = parser.parse_args()
    results = Results("recordio", ("sagemaker",), **vars(args))
    for rows in args.rows:
        bench(results, args, rows)
    return 0


def bench(results: Results, args: argparse.Namespace, rows: int) -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((rows, args.dim), dtype=np.float32)
    labels = rng.integers(0, 10, rows).astype(np.float32)
    body = encode_dense(features, labels)
    mb = len(body) / 1e6
    print(f"data: {rows:,} dense float32 records x {args.dim} features + 1 label = {mb:,.1f} MB "
          f"({len(body) // rows} bytes per record)")

    timings = ours(body, args.repeats, args.batch_rows)
    for name, seconds in timings.items():
        print(f"ours  {name:<26} {seconds * 1e3:9.1f} ms  {mb / seconds:9,.0f} MB/s")

    if not SDK_PYTHON.exists():
        print(f"SDK anchor unavailable: {SDK_PYTHON} is missing (see tests/fixtures/make_sdk_recordio.py).")
        for name, seconds in timings.items():
            results.add("common", f"recordIO reader, {name}", data="dense float32 records", rows=rows, cols=args.dim,
                        ours=mb / seconds, unit="MB/s", seconds=seconds)
        return
    sdk_rows = min(args.sdk_rows or rows, rows)
    sdk_bytes = len(body) // rows * sdk_rows  # every record has the same length
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.rec"
        path.write_bytes(body)
        rows_read, seconds = sdk(path, sdk_bytes, args.repeats)
    sdk_rate = sdk_bytes / 1e6 / seconds
    scope = "all rows" if sdk_rows == rows else f"the first {sdk_rows:,} rows ({sdk_bytes / 1e6:,.1f} MB), scaled"
    print(f"sdk   read_records + numpy rows  {seconds * 1e3:9.1f} ms  {sdk_rate:9,.0f} MB/s  "
          f"(timed on {scope}; {rows_read:,} records)")
    if sdk_rows != rows:
        print(f"      -> about {mb / sdk_rate:,.1f} s for all {rows:,} rows")
    for name, ours_seconds in timings.items():
        print(f"ratio ours {name} / sdk: {mb / ours_seconds / sdk_rate:,.1f}x")
        results.add("common", f"recordIO reader, {name}", data="dense float32 records", rows=rows, cols=args.dim,
                    ours=mb / ours_seconds, unit="MB/s", anchor="SageMaker SDK read_records + numpy rows",
                    anchor_value=sdk_rate, seconds=ours_seconds, anchor_seconds=mb / sdk_rate)


if __name__ == "__main__":
    sys.exit(main())
