"""CSV parse throughput: our reader vs pandas' C reader on the same numeric bytes.

Usage: bench_readers.py [--rows N,N,...]
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import pandas as pd
from benchlib import interleaved_medians, report
from results import Results, add_option

from common.data.csv_reader import CsvReader

COLS = 64


def main() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--rows", "20000,200000", "20000,100000", help="rows of the CSV body, one run per size")
    args = parser.parse_args()
    results = Results("readers", ("pandas",), **vars(args))
    for rows in args.rows:
        bench(results, rows)


def bench(results: Results, rows: int) -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((rows, COLS)).astype(np.float32)
    buffer = io.StringIO()
    np.savetxt(buffer, data, delimiter=",", fmt="%.7g")
    body = buffer.getvalue().encode()
    megabytes = len(body) / 1e6
    reader = CsvReader(label_size=1)

    def ours_whole() -> None:
        reader.parse(body)

    def ours_streamed() -> None:
        for _ in reader.batches(io.BytesIO(body), "bench.csv", 5000):
            pass

    def pandas_c() -> None:
        pd.read_csv(io.BytesIO(body), header=None, dtype=np.float32, engine="c").to_numpy()

    check = reader.parse(body)
    np.testing.assert_array_equal(check.features, pd.read_csv(io.BytesIO(body), header=None, dtype=np.float32)
                                  .to_numpy()[:, 1:])
    medians = interleaved_medians({"ours": ours_whole, "streamed": ours_streamed, "pandas": pandas_c})
    ours, streamed, anchor = medians["ours"], medians["streamed"], medians["pandas"]
    report(f"CSV parse, {rows:,} x {COLS} float32 (label + 63 features), {megabytes:.0f} MB, "
           "median of 7 interleaved runs", [
        ("ours (whole body)", f"{megabytes / ours:7.1f} MB/s"),
        ("ours (streamed, 5k-row batches)", f"{megabytes / streamed:7.1f} MB/s"),
        ("pandas read_csv engine=c", f"{megabytes / anchor:7.1f} MB/s"),
        ("ratio ours/pandas", f"{anchor / ours:7.2f}x (streamed {anchor / streamed:.2f}x)"),
    ])
    size = {"data": "random float32 CSV", "rows": rows, "cols": COLS}
    for case, seconds in (("CSV reader, whole body", ours), ("CSV reader, streamed in 5k-row batches", streamed)):
        results.add("common", case, **size, ours=megabytes / seconds, unit="MB/s", anchor="pandas read_csv engine=c",
                    anchor_value=megabytes / anchor, seconds=seconds, anchor_seconds=anchor)


if __name__ == "__main__":
    main()
