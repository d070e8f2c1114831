"""Importing a library without the optional packages it would pull in for APIs we never call, and modules
imported only when first used."""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import sys
from collections.abc import Iterator
from typing import Any


class _Refuse(importlib.abc.MetaPathFinder):
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
