"""What a benchmark measured, on disk: bench/results/<bench>.json, read by bench/report.py.

Each bench makes one `Results`, adds a record per figure it compares (ours, the anchor's value, the unit)
and the file is rewritten after every record, so a bench that fails half-way keeps what it measured.
Sizes and repeats come from the command line, or else from the environment, which is how make passes
them (`make bench-kmeans ROWS=50000,1000000`); BENCH_QUICK=1 (make bench-report) picks each bench's
quick sizes.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# Units where less is better; every other unit (rows/s, q/s, req/s, MB/s, AUC, recall, accuracy) is the reverse.
LOWER_IS_BETTER = {"s", "ms", "MB", "inertia", "RMSE", "radians"}


def quick() -> bool:
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def counts(text: str) -> list[int]:
    """'50000,1_000_000' -> [50000, 1000000]."""
    return [int(part) for part in text.replace("_", "").split(",") if part.strip()]


def add_option(parser: argparse.ArgumentParser, flag: str, full: str, quick_value: str | None = None,
               kind=counts, help: str = "") -> None:
    """`flag` (e.g. --rows), defaulting to $BENCH_ROWS when set, else the quick value under BENCH_QUICK, else full."""
    variable = "BENCH_" + flag.lstrip("-").upper().replace("-", "_")
    default = os.environ.get(variable) or (quick_value if quick() and quick_value is not None else full)
    parser.add_argument(flag, type=kind, default=kind(default), help=f"{help} (${variable}; default {default})")


def cpu_seconds() -> float:
    """User + system CPU of this process and of the children it has waited for: unlike wall time, hardly
    moved by other work on a shared machine."""
    return sum(usage.ru_utime + usage.ru_stime
               for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def machine(libraries: tuple[str, ...]) -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal"))
    versions = {}
    for name in ("numpy", "numba", *libraries):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": round(memory_kb / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform(), "libraries": versions}


class Results:
    def __init__(self, bench: str, libraries: tuple[str, ...] = (), **settings: object) -> None:
        self.bench, self.settings = bench, settings
        self.path = RESULTS / f"{bench}.json"
        self.machine = machine(libraries)
        self.started = time.time()
        self.load_at_start = os.getloadavg()[0]
        self.records: list[dict] = []

    def add(self, algorithm: str, case: str, *, data: str, rows: int, cols: int, ours: float, unit: str,
            anchor: str | None = None, anchor_value: float | None = None, ratio: float | None = None,
            **extra: object) -> None:
        """One figure: ours and, when there is one, the anchor's value of the same thing on the same data.
        `ratio` defaults to ours / anchor_value (a bench may know a better one, such as a median of paired runs);
        `extra` carries what a plot needs beyond that (a recall, a seed spread, an RMSE)."""
        if ratio is None and anchor_value:
            ratio = ours / anchor_value
        self.records.append({
            "algorithm": algorithm, "case": case, "data": data, "rows": rows, "cols": cols,
            "ours": ours, "anchor": anchor, "anchor_value": anchor_value, "unit": unit, "ratio": ratio,
            "better": "lower" if unit in LOWER_IS_BETTER else "higher", **extra})
        self.save()

    def save(self) -> Path:
        RESULTS.mkdir(exist_ok=True)
        document = {
            "bench": self.bench, "settings": {**self.settings, "quick": quick()},
            "date": datetime.datetime.fromtimestamp(self.started).astimezone().isoformat(timespec="seconds"),
            "seconds": round(time.time() - self.started, 1), "cpu_seconds": round(cpu_seconds(), 1),
            "load_average": [round(self.load_at_start, 2), round(os.getloadavg()[0], 2)],
            "machine": self.machine, "records": self.records}
        self.path.write_text(json.dumps(document, indent=1) + "\n")
        return self.path
