"""numba, as every kernel module imports it: `from common.data.jit import numba`.

numba loads its compiler's registries once per process, at the first compile or cache load of any kernel:
0.4 s of CPU here, half of it importing scipy.linalg (only to learn whether np.correlate and np.convolve may
call BLAS) and cffi (for cffi functions in kernels), which no kernel here uses. Importing this module loads
the registries with both hidden. np.dot and @ in a kernel are unaffected: numba imports scipy.linalg when it
compiles them, and compiled code looks BLAS up when it first runs.
"""

from __future__ import annotations

import numba
from numba.core.registry import cpu_target

from common.imports import without

with without("scipy.linalg", "cffi"):
    cpu_target.typing_context.refresh()
    cpu_target.target_context.refresh()

__all__ = ["numba"]
