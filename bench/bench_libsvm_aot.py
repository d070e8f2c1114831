"""What an ahead-of-time compiled libsvm kernel would save a small job: a measurement for a decision, not a path
the images take.

A small XGBoost libsvm job pays numba's import and its cache load (about 0.18 s here) before the kernel parses a
byte. This builds the same kernel (`libsvm_kernel.capacities` and `parse_lines`, the same Python source) with
`numba.pycc` into an extension module that imports with numpy alone, then times, in fresh processes run in turn
(medians of --repeats): import + counting pass + parse of the digits libsvm file (bench_xgboost.py's, --rows
rows), by the kernel as the images load it (cached JIT) and by the compiled module. Both must give the same
arrays. numba.pycc is deprecated and needs a C compiler; the bench says so and stops when there is none.
Usage: bench_libsvm_aot.py [--rows N,N,...] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_xgboost import make_data
from benchlib import REPO
from results import Results, add_option

BUILD = """
import sys
from numba.pycc import CC
from common.data import libsvm_kernel as k
cc = CC("libsvm_aot")
cc.output_dir = sys.argv[1]
cc.export("capacities", "UniTuple(i8, 2)(u1[::1])")(k.capacities.py_func)
cc.export("parse_lines", "Tuple((i8, i8, i8, i8, i8, b1, b1))(u1[::1], b1, i8[::1], i4[::1], f4[::1], f4[::1], "
          "f4[::1], i8[::1], u1[::1], u1[::1], u1[::1])")(k.parse_lines.py_func)
cc.compile()
"""
PARSE = """
import json, sys, time
started = time.perf_counter()
import numpy as np
if sys.argv[2] == "aot":
    sys.path.insert(0, sys.argv[3])
    import libsvm_aot as kernel
else:
    from common.data import libsvm_kernel as kernel
imported = time.perf_counter()
buf = np.frombuffer(open(sys.argv[1], "rb").read(), np.uint8)
rows, pairs = kernel.capacities(buf)
arrays = (np.empty(rows + 1, np.int64), np.empty(pairs, np.int32), np.empty(pairs, np.float32),
          np.empty(rows, np.float32), np.empty(rows, np.float32), np.empty(rows, np.int64))
words = [np.frombuffer(word, np.uint8) for word in (b"nan", b"inf", b"infinity")]
status, rows, nnz = kernel.parse_lines(buf, True, *arrays, *words)[:3]
done = time.perf_counter()
indptr, indices, values, labels = (a[:n] for a, n in zip(arrays, (rows + 1, nnz, nnz, rows)))
print(json.dumps({"import_s": imported - started, "parse_s": done - imported, "total_s": done - started,
                  "status": int(status), "digest": [int(indptr[-1]), int(indices.sum()), float(values.sum()),
                                                    float(labels.sum())]}))
"""


def run(path: Path, mode: str, module_dir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PARSE, str(path), mode, str(module_dir)], capture_output=True,
                          text=True, env=env, cwd=REPO, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_option(parser, "--rows", "50000,200000", "50000", help="rows of the digits libsvm file")
    add_option(parser, "--repeats", "7", "5", kind=int, help="fresh processes of each, run in turn")
    args = parser.parse_args()
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        raise SystemExit("numba.pycc needs a C compiler (cc or gcc) on the PATH")
    results = Results("libsvm_aot", ("numba",), **vars(args))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run([sys.executable, "-W", "ignore", "-c", BUILD, str(root)], check=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True)
        print("\n== libsvm parse in a fresh process: import + counting pass + parse, medians of "
              f"{args.repeats} run in turn")
        for rows in args.rows:
            _, libsvm, cols = make_data(root, "digits", rows, 64)
            runs: dict[str, list[dict]] = {"jit": [], "aot": []}
            for _ in range(args.repeats):
                for mode in runs:
                    runs[mode].append(run(libsvm, mode, root))
            digests = {json.dumps(r["digest"]) for mode in runs for r in runs[mode]}
            if len(digests) != 1 or any(r["status"] for mode in runs for r in runs[mode]):
                raise SystemExit(f"the two kernels disagree at {rows} rows: {digests}")
            median = {mode: {key: statistics.median(r[key] for r in runs[mode])
                             for key in ("import_s", "parse_s", "total_s")} for mode in runs}
            mb = libsvm.stat().st_size / 1e6
            for mode, name in (("jit", "cached numba kernel (the images)"), ("aot", "numba.pycc module")):
                m = median[mode]
                print(f"  digits {rows:,} rows ({mb:.0f} MB), {name:<34} import {m['import_s']:.3f} s  "
                      f"parse {m['parse_s']:.3f} s  total {m['total_s']:.3f} s")
            print(f"  ratio cached JIT / AOT: {median['jit']['total_s'] / median['aot']['total_s']:.2f}x")
            results.add("xgboost", "libsvm import + parse, fresh process", data="sklearn digits tiled, libsvm",
                        rows=rows, cols=cols, ours=median["jit"]["total_s"], unit="s",
                        anchor="the same kernel compiled ahead of time (numba.pycc)",
                        anchor_value=median["aot"]["total_s"],
                        jit=median["jit"], aot=median["aot"])
    print(f"  written to {results.path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
