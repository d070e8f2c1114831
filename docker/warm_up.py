"""Build time: fill numba's on-disk cache so the image's first train or serve compiles nothing.

Runs the shared readers' kernels on tiny inputs, then the algorithm's own class-level hook
`warm_up_kernels()` when it has one. Algorithm.warm_up() needs a trained model, so serving
calls that one at model load.

    ALGORITHM=kmeans NUMBA_CACHE_DIR=/opt/numba-cache python docker/warm_up.py
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    start = time.monotonic()
    from common import content_types as ct
    from common.algorithm import load_algorithm
    from common.content_types import MediaType
    from common.readers import reader_for, recordio

    recordio.warm_up()
    reader_for(MediaType(ct.CSV)).parse(b"1,2.5,nan\n3,4e-1,-5\n")
    algorithm = load_algorithm(os.environ.get("ALGORITHM"))
    hook = getattr(algorithm, "warm_up_kernels", None)
    if hook is not None:
        hook()
    print(f"numba cache warmed for {algorithm.name} in {time.monotonic() - start:.1f} s"
          + ("" if hook else " (readers only: the algorithm has no warm_up_kernels)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
