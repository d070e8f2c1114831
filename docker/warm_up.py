"""Build time: fill numba's on-disk cache so the image's first train or serve compiles nothing.

Runs the shared readers' kernels on tiny inputs, then the algorithm's own class-level hook
`warm_up_kernels()` when it has one. Algorithm.warm_up() needs a trained model, so serving
calls that one at model load. Then imports every module of common/, of the algorithm and the
gunicorn pieces `serve` runs: the install steps dropped site-packages' bytecode, and these
imports write it again for exactly the modules train and serve load.

    ALGORITHM=kmeans NUMBA_CACHE_DIR=/opt/numba-cache python docker/warm_up.py
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time

GUNICORN = ("gunicorn.app.base", "gunicorn.arbiter", "gunicorn.workers.gthread", "gunicorn.glogging",
            "gunicorn.http.wsgi")


def import_everything(packages: list[str]) -> int:
    """Imports each package's modules and GUNICORN; returns how many could not be imported
    (e.g. common/tabular/tables.py needs pyarrow, which only the tabular images carry)."""
    names = list(GUNICORN)
    for package in packages:
        module = importlib.import_module(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
    missing = 0
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing += 1
    return missing


def main() -> int:
    start = time.monotonic()
    from common.algorithm import load_algorithm
    from common.data import content_types as ct
    from common.data import recordio_reader as recordio
    from common.data.content_types import MediaType
    from common.data.registry import reader_for

    recordio.warm_up()
    reader_for(MediaType(ct.CSV)).parse(b"1,2.5,nan\n3,4e-1,-5\n")
    name = os.environ.get("ALGORITHM")
    algorithm = load_algorithm(name)
    hook = getattr(algorithm, "warm_up_kernels", None)
    if hook is not None:
        hook()
    print(f"numba cache warmed for {algorithm.name} in {time.monotonic() - start:.1f} s"
          + ("" if hook else " (readers only: the algorithm has no warm_up_kernels)"))
    missing = import_everything(["common", f"algorithms.{name}"])
    print(f"modules imported for their bytecode ({missing} need packages this image does not carry)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
