"""Importing a library without the optional packages it would pull in for APIs we never call, and modules
imported only when first used."""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import sys
from collections.abc import Iterator
from typing import Any


class _Refuse:
    """Finds nothing for the hidden packages (and their submodules): `import` raises ModuleNotFoundError, as
    when a package is not installed. (A None in sys.modules is not enough: Cython's import in pyarrow's
    pandas shim gets None back instead of an error.)"""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if any(fullname == name or fullname.startswith(name + ".") for name in self.names):
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by common.imports)", name=fullname)
        return None


@contextlib.contextmanager
def without(*names: str) -> Iterator[None]:
    """Within the block, `import name` fails for each of `names` (a package, or a subpackage such as
    "scipy.linalg") not imported yet.

    lightgbm, xgboost and pyarrow import scikit-learn and pandas when they are installed (1.1 s and 0.85 s
    here) for conversions we never use: we hand them numpy arrays. The images do not install them (but
    for XGBoost's script mode), so this makes a development virtualenv start like the image. A library
    that tries once and remembers (pyarrow's pandas shim) keeps treating the package as absent; our own
    later imports are unaffected.
    """
    hidden = frozenset(name for name in names if name not in sys.modules)
    if not hidden:
        yield
        return
    finder = _Refuse(hidden)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


class LazyModule:
    """Stands for the module `name`, imported at the first attribute access. Algorithm modules name their
    numba kernels this way, so that importing an algorithm (describe, the server's parent) loads no numba."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


# scipy's array-API view of numpy (and scikit-learn's copy of it) clones numpy's namespace with `from numpy import
# *` and a getattr of every name dir(numpy) lists, and each lists numpy's lazy submodules: importing scipy.sparse
# imported 118 modules more (numpy.f2py, numpy.testing, numpy.ma, ...), 65 ms of every process that reads sparse
# data or loads XGBoost.
CLONED_NUMPY = ("scipy._lib.array_api_compat.numpy", "sklearn.externals.array_api_compat.numpy")
NUMPY_SUBMODULES = ("char", "core", "ctypeslib", "distutils", "f2py", "ma", "matlib", "polynomial", "rec",
                    "strings", "testing", "typing")


class _CloneNumpyLean:
    """Finds a CLONED_NUMPY module as the import system would, and runs it while numpy lists only the submodules
    already imported. The others stay reachable through the clone, imported at first use as through numpy."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if fullname not in CLONED_NUMPY:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _LeanLoader(spec.loader)
        return spec


class _LeanLoader:
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:  # get_code, is_package, ... as the file's own loader answers
        return getattr(self._loader, name)

    def create_module(self, spec: object) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        import numpy

        hidden = {name for name in NUMPY_SUBMODULES if f"numpy.{name}" not in sys.modules}
        listed, listing = numpy.__all__, numpy.__dict__.get("__dir__")
        numpy.__all__ = [name for name in listed if name not in hidden]
        if listing is not None:
            numpy.__dir__ = lambda: [name for name in listing() if name not in hidden]
        try:
            self._loader.exec_module(module)
        finally:
            numpy.__all__ = listed
            if listing is not None:
                numpy.__dir__ = listing

        def submodule(name: str) -> Any:
            if name in hidden:
                return getattr(numpy, name)
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

        module.__getattr__ = submodule


def lean_scipy() -> None:
    """Make this process's imports of scipy and scikit-learn skip numpy's unused submodules (CLONED_NUMPY). The
    entrypoint calls it first. The finder stays on sys.meta_path: it only ever answers for those two modules."""
    if not any(isinstance(f, _CloneNumpyLean) for f in sys.meta_path):
        sys.meta_path.insert(0, _CloneNumpyLean())
