"""numba, as every kernel module imports it: `from common.data.jit import numba`. Importing this module adapts
how numba uses its on-disk cache (NUMBA_CACHE_DIR, filled when an image is built) in three ways:

- A cache load skips the compiler's registries. The cached entry holds machine code, yet numba loads every
  typing template and lowering of numpy and Python before it looks in the cache: 0.15 s of CPU in every
  training job and serving worker whose kernels are all cached. A load now initialises only what cached code
  calls (the runtime, NRT); a cache miss compiles, and numba's compiler loads the registries itself then.
- The registries load with scipy.linalg and cffi hidden: numba imports them only to learn whether
  np.correlate and np.convolve may call BLAS, and for cffi functions in kernels, which no kernel here uses
  (0.2 s of CPU and 18 MB). np.dot and @ are unaffected: numba imports scipy.linalg when it compiles them.
- A read-only cache is read. numba keeps a cache only where it can write, and with a read-only file system
  (`docker run --read-only`, a read-only volume) no place qualifies: every `cache=True` kernel raised at
  import. Now such a cache is loaded from, and a kernel it lacks is compiled in memory, with a warning.
- The runtime's own functions (NRT's atomic reference counts, which every kernel taking an array calls) are
  compiled once and kept next to the kernels as object code: numba compiled them in every process at the
  first kernel call (0.017 s). numba's third-party extensions (entry points) load at the first compile, not
  at the first call of a cached kernel (0.007 s): the compiler's registries load them, which a cache load skips.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path

import llvmlite
import numba
from numba.core import caching, dispatcher
from numba.core.registry import cpu_target
from numba.core.runtime import nrtdynmod, rtsys

from common.imports import without

log = logging.getLogger(__name__)


def _load_overload(self: caching.Cache, sig, target_context):  # numba.core.caching.Cache.load_overload
    rtsys.initialize(target_context)
    with self._guard_against_spurious_io_errors():
        return self._load_overload(sig, target_context)


def _save_overload(self: caching.Cache, sig, data) -> None:  # numba.core.caching.Cache.save_overload
    if not isinstance(self._impl.locator, _ReadOnlyCacheLocator):
        _numba_save_overload(self, sig, data)
        return
    log.warning("numba compiled %s%s, which the read-only cache %s lacks: kept in memory only",
                self._py_func.__qualname__, sig, self._impl.locator.get_cache_path())


class _ReadOnlyCacheLocator(caching.UserProvidedCacheLocator):
    """NUMBA_CACHE_DIR when it exists but cannot be written (a kernel it lacks is then compiled in memory)."""

    @classmethod
    def from_function(cls, py_func, py_file):
        if not numba.config.CACHE_DIR or not os.path.isdir(numba.config.CACHE_DIR) or not os.path.exists(py_file):
            return None
        return cls(py_func, py_file)


def _refresh_without(refresh):
    def refresh_registries() -> None:  # the target context's refresh also refreshes the typing context's
        with without("scipy.linalg", "cffi"):
            refresh()
    return refresh_registries


def _compile_nrt_functions(ctx):  # numba.core.runtime.nrtdynmod.compile_nrt_functions
    codegen = ctx.codegen()
    path = _nrt_cache_file(codegen)
    try:
        return codegen.unserialize_library(pickle.loads(path.read_bytes()))
    except (OSError, EOFError, ValueError, pickle.UnpicklingError):
        pass  # not kept yet (or unreadable): compile
    ir_module, library = nrtdynmod.create_nrt_module(ctx)
    library.enable_object_caching()
    library.add_ir_module(ir_module)
    library.finalize()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}")
        partial.write_bytes(pickle.dumps(library.serialize_using_object_code()))
        os.replace(partial, path)
    except OSError:
        pass  # a read-only cache: compiled in memory, as numba does
    return library


def _nrt_cache_file(codegen) -> Path:
    """Where the runtime's object code is kept: numba's cache directory (the image's), else beside this file's
    kernels; keyed by the numba and LLVM builds and the CPU the code is for."""
    key = repr((numba.__version__, llvmlite.__version__, codegen.magic_tuple())).encode()
    folder = Path(numba.config.CACHE_DIR) if numba.config.CACHE_DIR else Path(__file__).parent / "__pycache__"
    return folder / f"nrt-{hashlib.sha256(key).hexdigest()[:16]}.nbo"


_numba_save_overload = caching.Cache.save_overload
caching.Cache.load_overload = _load_overload
caching.Cache.save_overload = _save_overload
cpu_target.target_context.refresh = _refresh_without(cpu_target.target_context.refresh)
# After numba's own locator for NUMBA_CACHE_DIR, which takes the directory when it is writable.
caching.CacheImpl._locator_classes.insert(1, _ReadOnlyCacheLocator)
nrtdynmod.compile_nrt_functions = _compile_nrt_functions
dispatcher._DispatcherBase._compilation_chain_init_hook = lambda self: None

__all__ = ["numba"]
