"""Renders bench/REPORT.md and its plots (bench/results/*.png) from the benches' bench/results/*.json.

    .venv/bin/python bench/report.py

make bench-report runs every bench at its quick sizes first; this only reads what is on disk, so it can be
run again after any single bench (make bench-knn ROWS=...).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullLocator  # noqa: E402

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
REPORT = BENCH / "REPORT.md"
TITLES = {"kmeans": "k-means", "pca": "PCA", "knn": "k-NN", "rcf": "Random Cut Forest", "fm": "Factorization machines",
          "xgboost": "XGBoost", "lightgbm": "LightGBM", "catboost": "CatBoost", "sklearn": "scikit-learn script mode",
          "common": "Shared code (readers, server)"}
# Per algorithm, the cases of the headline table (each at its largest size), first match of each prefix.
HEADLINES = {
    "kmeans": ["train: entrypoint", "inertia"],
    "pca": ["regular: entrypoint"],
    "knn": ["faiss.Flat: /invocations recordIO", "faiss.IVFFlat: /invocations recordIO"],
    "rcf": ["ROC AUC", "train: entrypoint"],
    "fm": ["ours tuned (entrypoint)", "test RMSE"],
    "xgboost": ["train from csv", "serve 1-row CSV -> CSV: requests/s"],
    "lightgbm": ["train: entrypoint", "serve 1-row CSV -> JSON: requests/s"],
    "catboost": ["train: entrypoint", "serve 1-row CSV -> JSON: requests/s"],
    "common": ["CSV reader, whole body", "recordIO reader, parse", "serve 1-row CSV -> JSON: requests/s"],
}


def load() -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"))]


def number(value: float | None, unit: str) -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    if unit in ("s", "ms"):
        return f"{value:.3f} {unit}" if value < 0.1 else f"{value:.2f} {unit}"
    if unit.endswith("/s"):
        return f"{value:,.0f} {unit}"
    if unit in ("AUC", "recall", "accuracy", "RMSE"):
        return f"{value:.4f}"
    if unit == "radians":
        return f"{value:.1e} rad"
    if unit == "MB":
        return f"{value:,.0f} MB"
    return f"{value:.5g}"


def data_size(record: dict) -> str:
    return f"{record['data']}, {record['rows']:,} x {record['cols']:,}"


def machine_line(document: dict) -> str:
    m = document["machine"]
    start, end = document["load_average"]
    settings = ", ".join(f"{k}={v}" for k, v in document["settings"].items())
    return (f"`{document['bench']}`: {document['date']}, {m['cpus']} x {m['cpu_model']}, {m['memory_gb']} GB, "
            f"Python {m['python']}; load average {start} at start, {end} at end; ran {document['seconds']:.0f} s "
            f"({document.get('cpu_seconds', 0):.0f} CPU s); "
            f"{settings}")


def table(entries: list[dict]) -> list[str]:
    lines = ["| case | data (rows x cols) | ours | anchor | anchor's | ours/anchor | better |",
             "|---|---|---:|---|---:|---:|---|"]
    for r in entries:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2g}x" if r["ratio"] < 0.1 else \
            f"{r['ratio']:,.0f}x" if r["ratio"] >= 100 else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['case']} | {data_size(r)} | {number(r['ours'], r['unit'])} | {r['anchor'] or '—'} | "
                     f"{number(r['anchor_value'], r['unit'])} | {ratio} | {r['better']} |")
    return lines


def headline(by_algorithm: dict[str, list[dict]]) -> list[dict]:
    chosen = []
    for algorithm, prefixes in HEADLINES.items():
        for prefix in prefixes:
            matches = [r for r in by_algorithm.get(algorithm, []) if r["case"].startswith(prefix)]
            if matches:
                largest = max(r["rows"] for r in matches)
                chosen.append({**next(r for r in matches if r["rows"] == largest),
                               "case": f"{TITLES[algorithm]}: {matches[0]['case']}"})
    return chosen


def seconds_of(record: dict) -> tuple[float, float | None]:
    """(ours, anchor) in seconds: the record's own figures when it is a time, else the extras it carries."""
    if record["unit"] == "s":
        return record["ours"], record["anchor_value"]
    return record["seconds"], record.get("anchor_seconds")


def spread(axes: plt.Axes, which: str, values: list[float]) -> None:
    """A log scale when the values span more than 30x (else a plain one: a log axis over less has almost no
    labelled ticks), with plain numbers either way."""
    axis = axes.xaxis if which == "x" else axes.yaxis
    if max(values) / min(values) > 30:
        (axes.set_xscale if which == "x" else axes.set_yscale)("log")
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1000 else f"{value:g}"))


def plot_time_vs_rows(algorithm: str, records: list[dict]) -> Path | None:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        if r["unit"] == "s" or "seconds" in r:
            groups[(r["case"], r["data"])].append(r)
    groups = {key: rs for key, rs in groups.items() if len({r["rows"] for r in rs}) > 1}
    if not groups:
        return None
    figure, axes = plt.subplots(figsize=(8, 5))
    anchors_drawn = set()
    for color, ((case, data), rs) in zip(plt.cm.tab10.colors * 3, groups.items()):
        rs = sorted(rs, key=lambda r: r["rows"])
        rows = [r["rows"] for r in rs]
        ours, theirs = zip(*(seconds_of(r) for r in rs))
        axes.plot(rows, ours, "o-", color=color, label=f"ours: {case}")
        key = (rs[0]["anchor"], data)
        if rs[0]["anchor"] and None not in theirs and key not in anchors_drawn:
            anchors_drawn.add(key)
            axes.plot(rows, theirs, "s--", color=color, alpha=0.7, label=f"anchor: {rs[0]['anchor']}")
    axes.set(xscale="log", xlabel="rows", ylabel="seconds",
             title=f"{TITLES.get(algorithm, algorithm)}: time vs rows")
    axes.set_xticks(sorted({r["rows"] for rs in groups.values() for r in rs}))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    spread(axes, "y", [value for line in axes.get_lines() for value in line.get_ydata()])
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    return save(figure, f"{algorithm}-time-vs-rows.png")


def plot_knn_recall(records: list[dict]) -> Path | None:
    requests = [r for r in records if "recall" in r]
    if not requests:
        return None
    sets = sorted({(r["data"], r["rows"]) for r in requests}, key=lambda s: (s[0], s[1]))
    largest = [s for s in sets if s[1] == max(rows for data, rows in sets if data == s[0])]
    figure, axes_row = plt.subplots(1, len(largest), figsize=(6 * len(largest), 4.5), squeeze=False)
    for axes, (data, rows) in zip(axes_row[0], largest):
        chosen = [r for r in requests if r["data"] == data and r["rows"] == rows]
        for color, index_type in zip(plt.cm.tab10.colors, dict.fromkeys(r["index_type"] for r in chosen)):
            of_type = [r for r in chosen if r["index_type"] == index_type]
            recall = of_type[0]["recall"]
            for r, marker in zip(of_type, "os"):
                axes.scatter(r["ours"], recall, marker=marker, color=color, label=f"{index_type} ours, {r['request']}")
            axes.scatter(of_type[0]["anchor_value"], recall, marker="^", color=color, edgecolor="black",
                         label=f"{index_type} FAISS index.search")
        spread(axes, "x", [r["ours"] for r in chosen] + [r["anchor_value"] for r in chosen])
        axes.set(xlabel="queries/s (1,000-query requests, median)", ylabel="recall@10 vs exact",
                 title=f"k-NN {data}, {rows:,} rows")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    return save(figure, "knn-recall-vs-throughput.png")


def plot_rcf_auc(records: list[dict]) -> Path | None:
    aucs = [r for r in records if "ours_sd" in r]
    if not aucs:
        return None
    figure, axes = plt.subplots(figsize=(6, 4.5))
    positions = range(len(aucs))
    ours = axes.bar([p - 0.2 for p in positions], [r["ours"] for r in aucs], 0.4,
                    yerr=[r["ours_sd"] for r in aucs], capsize=4, label="ours")
    theirs = axes.bar([p + 0.2 for p in positions], [r["anchor_value"] for r in aucs], 0.4,
                      yerr=[r["anchor_sd"] for r in aucs], capsize=4, label=aucs[0]["anchor"])
    for bars in (ours, theirs):
        axes.bar_label(bars, fmt="%.4f", padding=6, fontsize=8)
    lowest = min(min(r["ours"], r["anchor_value"]) for r in aucs)
    axes.set(xticks=list(positions), xticklabels=[f"{r['data']}\n{r['rows']:,} rows" for r in aucs],
             ylim=(max(0.0, lowest - 0.05), 1.01), ylabel="ROC AUC (mean ± sd over seeds)",
             title="RCF: anomaly ROC AUC, 100 trees x 256 samples")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(loc="lower left")
    return save(figure, "rcf-auc.png")


def plot_fm_rmse(records: list[dict]) -> Path | None:
    points: dict[str, tuple[float, float]] = {}
    for r in records:
        if "rmse" in r:
            points.setdefault(r["case"], (r["ours"], r["rmse"]))
            points.setdefault(r["anchor"], (r["anchor_value"], r["anchor_rmse"]))
    if not points:
        return None
    figure, axes = plt.subplots(figsize=(8, 5))
    for name, (seconds, rmse) in points.items():
        anchor = not name.startswith("ours")
        axes.scatter(seconds, rmse, marker="^" if anchor else "o", color="tab:orange" if anchor else "tab:blue")
        axes.annotate(name, (seconds, rmse), fontsize=7, xytext=(4, 4), textcoords="offset points")
    axes.set(xscale="log", xlabel="seconds (median; entrypoint runs include process start and file reading)",
             ylabel="test RMSE", title="Factorization machines on MovieLens-100k: RMSE vs time")
    axes.grid(True, which="both", alpha=0.3)
    return save(figure, "fm-rmse-vs-time.png")


def save(figure: plt.Figure, name: str) -> Path:
    path = RESULTS / name
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


PLOTS = {"knn": plot_knn_recall, "rcf": plot_rcf_auc, "fm": plot_fm_rmse}


def main() -> None:
    documents = load()
    if not documents:
        raise SystemExit(f"no results in {RESULTS}: run make bench-report (or one make bench-<name>) first")
    for stale in RESULTS.glob("*.png"):
        stale.unlink()
    by_algorithm: dict[str, list[dict]] = defaultdict(list)
    sources: dict[str, list[dict]] = defaultdict(list)
    for document in documents:
        for record in document["records"]:
            by_algorithm[record["algorithm"]].append(record)
            if document not in sources[record["algorithm"]]:
                sources[record["algorithm"]].append(document)
    machine = documents[0]["machine"]
    loads = [value for d in documents for value in d["load_average"]]
    lines = [
        "# Benchmarks: ours against the anchors",
        "",
        f"Written by `bench/report.py` from `bench/results/*.json` ({len(documents)} benches, "
        f"{sum(d['seconds'] for d in documents) / 60:.0f} min of benchmarking, "
        f"{sum(d.get('cpu_seconds', 0) for d in documents) / 60:.0f} CPU min, "
        f"{min(d['date'] for d in documents)[:10]} to {max(d['date'] for d in documents)[:10]}). "
        "Regenerate with `make bench-report` (every bench at its quick sizes, then this report); one bench at "
        "other sizes with e.g. `make bench-kmeans ROWS=50000,1000000 REPEATS=5`, then `.venv/bin/python "
        "bench/report.py`; the full default sizes with `make bench`.",
        "",
        f"Machine: {machine['cpus']} x {machine['cpu_model']}, {machine['memory_gb']} GB, Python {machine['python']}, "
        f"{machine['platform']}. **The machine is shared with other work** (load average between "
        f"{min(loads)} and {max(loads)} on 2 cores while these ran): absolute times move by up to 2x from one run to "
        "the next; the ratios are steadier, since each bench runs ours and its anchor in turn on the same data.",
        "",
        "Ratios are ours / anchor; `better` says which way is good for that unit (lower for times, higher for "
        "throughput and quality). Times are medians of several runs (the machine line says how many); "
        "`entrypoint` figures are whole processes (interpreter start, file reading and parsing included), as a "
        "SageMaker job sees them.",
        "",
        "## Headline",
        "",
        *table(headline(by_algorithm)),
    ]
    for algorithm in [a for a in TITLES if a in by_algorithm] + [a for a in by_algorithm if a not in TITLES]:
        records = by_algorithm[algorithm]
        lines += ["", f"## {TITLES.get(algorithm, algorithm)}", ""]
        lines += [f"- {machine_line(document)}" for document in sources[algorithm]]
        order = {case: i for i, case in enumerate(dict.fromkeys(r["case"] for r in records))}
        lines += ["", *table(sorted(records, key=lambda r: (order[r["case"]], r["data"], r["rows"])))]
        plots = [plot_time_vs_rows(algorithm, records)]
        if algorithm in PLOTS:
            plots.append(PLOTS[algorithm](records))
        lines += [f"\n![{path.stem}](results/{path.name})" for path in plots if path]
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"wrote {REPORT.relative_to(BENCH.parent)} and {len(list(RESULTS.glob('*.png')))} plots in "
          f"{RESULTS.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()
