"""Importing a library without the optional packages it would pull in for APIs we never call."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def without(*names: str) -> Iterator[None]:
    """Within the block, `import name` fails for each of `names` not imported yet.

    lightgbm, xgboost and pyarrow import scikit-learn and pandas when they are installed (1.1 s and 0.85 s
    here) for conversions we never use: we hand them numpy arrays. The images do not install either, so
    this makes a development virtualenv start like the image. A library that tries once and remembers
    (pyarrow's pandas shim) keeps treating the package as absent; our own later imports are unaffected.
    """
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            sys.modules.pop(name, None)
