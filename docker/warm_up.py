"""Build time: fill numba's on-disk cache so the image's first train or serve compiles nothing.

Runs every shared reader's kernels on tiny inputs, in each form a job or a request reaches them (request
bodies are read-only buffers, recordIO streams writable ones, File-mode CSV and libsvm are memory-mapped and
read in parallel), then the algorithm's own class-level hook `warm_up_kernels()` when it has one.
tests/container/test_numba_cache.py proves that a train and a serve of the image load every kernel they run
from this cache. Algorithm.warm_up() needs a trained model, so serving calls that one at model load.
Then imports every module of common/, of the algorithm, the gunicorn pieces `serve` runs and the frameworks
of the algorithm's requirements: the install steps dropped site-packages' bytecode, and these imports write
it again for the modules train and serve load.

    ALGORITHM=kmeans NUMBA_CACHE_DIR=/opt/numba-cache python docker/warm_up.py
"""

from __future__ import annotations

import importlib
import io
import os
import pkgutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


def import_frameworks(requirements: Path, submodules: bool) -> list[str]:
    """Imports the top-level modules of every distribution the algorithm's requirements file names (catboost,
    lightgbm, faiss, scikit-learn, ...): the model's load imports them, often pandas or pyarrow with them, and
    without this their bytecode would be compiled again in every container (hundreds of modules for CatBoost
    and scikit-learn). With `submodules` (an image that runs only the user's code, whose model may be any
    estimator) also the submodules a package lists in `__all__`: scikit-learn's load lazily. Returns the
    modules imported."""
    import importlib.metadata
    import importlib.util
    import re

    if not requirements.is_file():
        return []
    wanted = {re.split(r"[<>=!~;\[ ]", line.split("#")[0].strip(), maxsplit=1)[0].lower().replace("_", "-")
              for line in requirements.read_text().splitlines()} - {"", "pip"}
    modules = sorted({module for module, dists in importlib.metadata.packages_distributions().items()
                      for dist in dists if dist.lower().replace("_", "-") in wanted
                      and module.isidentifier() and not module.startswith("_")})
    imported = []
    for module in modules:
        try:
            package = importlib.import_module(module)
            imported.append(module)
            for sub in getattr(package, "__all__", ()) if submodules else ():
                if isinstance(sub, str) and hasattr(package, "__path__") and not sub.startswith("_") \
                        and importlib.util.find_spec(f"{module}.{sub}") is not None:
                    importlib.import_module(f"{module}.{sub}")
        except Exception:  # noqa: BLE001 - a module that needs what the image lacks is not one serving imports
            continue
    return imported


def warm_up_readers() -> None:
    """The kernels of common/data, every signature: the same kernel compiles once per argument type, and a
    read-only buffer (np.frombuffer of bytes or of a read-only mapping) is a type of its own."""
    from common.data import content_types as ct
    from common.data import parallel_read
    from common.data import recordio_reader as recordio
    from common.data.content_types import MediaType
    from common.data.recordio_writer import MAGIC_BYTES, encode_dense
    from common.data.registry import reader_for

    recordio.warm_up()  # request bodies, dense and sparse, and a stream of dense records
    # A record split in two parts by dmlc's writer, from a stream (a writable buffer): as recordio.warm_up's.
    payload = encode_dense(np.frombuffer(MAGIC_BYTES + bytes(4), np.float32).reshape(1, 2))[8:]
    split = (struct.pack("<II", recordio.MAGIC, 1 << 29 | 16) + payload[:16]
             + struct.pack("<II", recordio.MAGIC, 3 << 29 | len(payload) - 20) + payload[20:])
    list(recordio.RecordIOReader().batches(io.BytesIO(split), "warm-up", 1))
    csv, libsvm = b"1,2.5,nan\n3,4e-1,-5\n", b"1 1:2.5 3:4\n0:0.5 qid:2 2:1 # note\n"
    reader_for(MediaType(ct.CSV)).parse(csv)
    list(reader_for(MediaType(ct.CSV)).batches(io.BytesIO(csv), "warm-up", 1))
    for labelled in (True, False):  # training data; requests
        reader_for(MediaType(ct.LIBSVM), labelled=labelled).parse(libsvm if labelled else b"1:2.5 3:4\n")
    with tempfile.TemporaryDirectory() as folder:  # File mode's parallel reads (XGBoost's training files)
        (Path(folder) / "train.csv").write_bytes(csv)
        (Path(folder) / "train.libsvm").write_bytes(libsvm)
        parallel_read.load_csv([Path(folder) / "train.csv"], 1)
        parallel_read.load_libsvm([Path(folder) / "train.libsvm"])


def main() -> int:
    start = time.monotonic()
    from common.algorithm import load_algorithm

    warm_up_readers()
    name = os.environ.get("ALGORITHM")
    algorithm = load_algorithm(name)
    hook = getattr(algorithm, "warm_up_kernels", None)
    if hook is not None:
        hook()
    print(f"numba cache warmed for {algorithm.name} in {time.monotonic() - start:.1f} s"
          + ("" if hook else " (readers only: the algorithm has no warm_up_kernels)"))
    missing = import_everything(["common", f"algorithms.{name}"])
    requirements = Path(os.environ.get("WARM_UP_REQUIREMENTS", "/tmp/requirements/algorithm.txt"))
    user_code_only = algorithm.script_mode is not None and algorithm.script_mode.scripts_only
    frameworks = import_frameworks(requirements, submodules=user_code_only)
    print(f"modules imported for their bytecode ({missing} need packages this image does not carry), and "
          f"the frameworks' {', '.join(frameworks) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
