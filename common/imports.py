"""Importing a library without the optional packages it would pull in for APIs we never call."""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Iterator


class _Refuse(importlib.abc.MetaPathFinder):
    """Finds nothing for the hidden top-level packages: `import` raises ModuleNotFoundError, as when a
    package is not installed. (A None in sys.modules is not enough: Cython's import in pyarrow's pandas
    shim gets None back instead of an error.)"""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by common.imports)", name=fullname)
        return None


@contextlib.contextmanager
def without(*names: str) -> Iterator[None]:
    """Within the block, `import name` fails for each of `names` not imported yet.

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
