"""common.imports: the entrypoint's lean scipy import, each case in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

from common.imports import CLONED_NUMPY

SCIPY_CLONE, SKLEARN_CLONE = CLONED_NUMPY

# The clone's public names, and which of numpy's submodules the import of scipy.sparse brought in.
PROBE = f"""
import json, sys
if sys.argv[1] == "lean":
    from common.imports import lean_scipy
    lean_scipy()
import scipy.sparse
import {SCIPY_CLONE} as clone
imported = sorted(name for name in sys.modules if name.startswith("numpy.") and name.count(".") == 1)
print(json.dumps({{"names": sorted(n for n in vars(clone) if not n.startswith("_")), "imported": imported,
                  "modules": len(sys.modules)}}))
"""


def _probe(mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_scipy_sparse_imports_without_numpys_unused_submodules() -> None:
    plain, lean = _probe("plain"), _probe("lean")
    assert {"numpy.f2py", "numpy.testing", "numpy.ma"} <= set(plain["imported"])
    assert not {"numpy.f2py", "numpy.testing", "numpy.ma"} & set(lean["imported"])
    assert lean["modules"] < plain["modules"]
    # What the clone lacks is exactly the submodules left unimported.
    missing = set(plain["names"]) - set(lean["names"])
    assert missing and all(f"numpy.{name}" in plain["imported"] for name in missing)
    assert set(lean["names"]) <= set(plain["names"])


def test_the_lean_clone_still_reaches_every_submodule_and_scipy_works() -> None:
    code = f"""
from common.imports import lean_scipy
lean_scipy()
lean_scipy()  # a second call adds no second finder
import sys
import numpy as np, scipy.sparse as sp, scipy.linalg, scipy.special, sklearn.linear_model
import {SCIPY_CLONE} as clone, {SKLEARN_CLONE} as sklearn_clone
assert sum(type(f).__name__ == "_CloneNumpyLean" for f in sys.meta_path) == 1
assert "numpy.testing" not in sys.modules and "numpy.f2py" not in sys.modules
assert sklearn_clone.testing is np.testing and sklearn_clone.ma is np.ma
assert clone.testing is np.testing and clone.ma is np.ma and clone.f2py is np.f2py
assert clone.linalg is not None and clone.asarray([1.0]).tolist() == [1.0]
try:
    clone.no_such_name
except AttributeError as exc:
    assert "no_such_name" in str(exc)
else:
    raise AssertionError("no AttributeError")
m = sp.csr_matrix(np.eye(3)) @ np.ones(3)
assert m.tolist() == [1.0, 1.0, 1.0] and abs(scipy.special.expit(0.0) - 0.5) < 1e-12
assert np.allclose(scipy.linalg.svd(np.eye(2))[1], [1, 1])
"""
    subprocess.run([sys.executable, "-c", code], check=True)
