"""Shingling: turn a time series into overlapping windows, the usual way to feed RCF a series.

RCF scores points, not sequences; a window of the last P values (a "shingle") lets it see shapes
(docs/images/rcf.md, "Time series (shingling)"). Row i of the result is values[i : i + P], so a series of n values gives
n - P + 1 rows (the last window is kept, unlike the AWS notebook's helper, issue #3745), and the
score of row i belongs to the window ending at time i + P - 1. A series with k columns gives
rows of k·P values, time-major (all columns at t, then at t + 1, ...).

With sm-local (no container):

    python -m algorithms.rcf.shingle nyc_taxi.csv shingled.csv --size 48 --column 1 --skip-header
    sm-local train --algorithm rcf --dir /tmp/rcf --channel train=shingled.csv \\
        --content-type train=text/csv --hp feature_dim=48 --hp num_samples_per_tree=200 \\
        --hp num_trees=50
    sm-local serve --algorithm rcf --dir /tmp/rcf      # then POST shingled rows as text/csv

feature_dim must equal P times the number of columns, and requests must be shingled the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common.errors import UserError


def shingle(values: np.ndarray, size: int) -> np.ndarray:
    """Windows of `size` consecutive rows of a 1-D (n,) or 2-D (n, k) series: float32 (n - size + 1, size·k)."""
    series = np.asarray(values, dtype=np.float32)
    if series.ndim == 1:
        series = series[:, None]
    if series.ndim != 2:
        raise UserError(f"A series to shingle must be 1-D or 2-D; got {series.ndim} dimensions.")
    if not 1 <= size <= len(series):
        raise UserError(f"The shingle size must be between 1 and the series length {len(series)}; got {size}.")
    windows = np.lib.stride_tricks.sliding_window_view(series, size, axis=0)  # (n - size + 1, k, size)
    return np.ascontiguousarray(windows.transpose(0, 2, 1).reshape(len(windows), -1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m algorithms.rcf.shingle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="CSV file, one time step per line")
    parser.add_argument("target", type=Path, help="CSV file to write, one window per line, no header")
    parser.add_argument("--size", type=int, required=True, help="window length P")
    parser.add_argument("--column", type=int, action="append",
                        help="0-based column(s) to use (default: all); repeat for several")
    parser.add_argument("--skip-header", action="store_true", help="the first line is a header")
    args = parser.parse_args(argv)
    try:
        table = np.loadtxt(args.source, delimiter=",", skiprows=int(args.skip_header), usecols=args.column,
                           dtype=np.float64, ndmin=2)
        rows = shingle(table, args.size)
    except (UserError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    np.savetxt(args.target, rows, delimiter=",", fmt="%.9g")
    print(f"wrote {len(rows)} windows of {rows.shape[1]} values to {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
