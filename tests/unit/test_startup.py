"""Start-up: a process imports only what it uses (bench/bench_startup.py measures what that costs).

Each check runs in a fresh interpreter and reads its sys.modules: importing and describing any algorithm
loads no numba (its kernels load at their first call); the server's parent (gunicorn's master) imports no
numba, scipy, Flask, model library or model (the workers do, after the fork); numba loads its registries
without scipy.linalg, and its runtime's functions from the cache folder (common/data/jit.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, algorithm_names
from tools.local import entrypoint_env

# Libraries a process of ours must not import before it needs them (top-level package names).
HEAVY = ("numba", "llvmlite", "scipy", "flask", "werkzeug", "faiss", "xgboost", "lightgbm", "catboost",
         "pandas", "sklearn", "pyarrow", "joblib", "threadpoolctl")
REPORT = f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"


def _last_json(code: str, env: dict[str, str] | None = None) -> object:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", algorithm_names())
def test_describing_an_algorithm_loads_no_numba_nor_its_library(name: str) -> None:
    code = (f"import json, sys\nfrom common.algorithm import load_algorithm\n"
            f"load_algorithm({name!r}).describe()\n{REPORT}")
    assert _last_json(code) == []


@pytest.mark.parametrize("name", algorithm_names())
def test_the_server_parent_imports_no_numba_flask_or_model(name: str, tmp_path: Path) -> None:
    """`serve` up to gunicorn's arbiter, which would fork the workers: what the master holds by then."""
    (tmp_path / "model").mkdir()
    if name == "sklearn":  # a script-only image serves the user's module: its code is prepared in the master
        (tmp_path / "model" / "code").mkdir()
        (tmp_path / "model" / "code" / "inference.py").write_text("")
    code = ("import json, sys\nimport gunicorn.app.base\n"
            f"gunicorn.app.base.BaseApplication.run = lambda self: {REPORT}\n"
            "from common.entrypoint import main\nsys.exit(main(['serve']))")
    assert _last_json(code, entrypoint_env(name, tmp_path)) == []


def test_a_script_only_image_with_no_module_fails_in_the_server_parent(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    done = subprocess.run([sys.executable, "-m", "common.entrypoint", "serve"], cwd=REPO, capture_output=True,
                          text=True, env=entrypoint_env("sklearn", tmp_path), timeout=120)
    assert done.returncode == 1
    assert "Error: This image serves inference modules only" in done.stderr
    assert "Starting gunicorn" not in done.stdout + done.stderr


def test_numba_loads_its_registries_without_scipy_linalg_and_np_dot_still_compiles() -> None:
    code = ("import json, sys\nimport numpy as np\nfrom common.data.jit import numba\n"
            "loaded = 'scipy.linalg' in sys.modules\n"
            "dot = numba.njit(lambda a: np.dot(a, a))\n"
            "print(json.dumps([loaded, float(dot(np.arange(3.0)))]))")
    assert _last_json(code) == [False, 5.0]


KERNEL = """\
import numpy as np
from common.data.jit import numba


@numba.njit(cache=True)
def total(values):
    return values.sum()
"""
# Run in the kernel's folder: the cached kernel's answer, whether numba's compiler registries were loaded
# (numba.misc.gdb_hook is one of their modules, imported by nothing else), and what went to stderr.
CALL_KERNEL = ("import json, sys\nimport numpy as np\nimport kernel\nanswer = float(kernel.total(np.arange(4.0)))\n"
               "print(json.dumps([answer, 'numba.misc.gdb_hook' in sys.modules]))")


def _call_kernel(folder: Path, cache: Path, wrapper: list[str] = ()) -> tuple[list, str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{folder}:{REPO}", "NUMBA_CACHE_DIR": str(cache)}
    done = subprocess.run([*wrapper, sys.executable, "-c", CALL_KERNEL], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_cached_kernel_loads_without_the_compiler_registries(tmp_path: Path) -> None:
    (tmp_path / "kernel.py").write_text(KERNEL)
    assert _call_kernel(tmp_path, tmp_path / "cache")[0] == [6.0, True]    # compiled: the registries load
    assert _call_kernel(tmp_path, tmp_path / "cache")[0] == [6.0, False]   # from the cache: they do not


def _read_only(*folders: Path) -> list[str]:
    """A command prefix that runs its command with `folders` mounted read-only (a private mount namespace);
    skips the test where that is not allowed (no root, or a sandbox without mount namespaces)."""
    binds = "; ".join(f"mount --bind {f} {f} && mount -o remount,bind,ro {f}" for f in folders)
    prefix = ["unshare", "-m", "sh", "-c", f'{binds} && exec "$0" "$@"']
    probe = subprocess.run([*prefix, "sh", "-c", f"! touch {folders[0]}/probe 2>/dev/null"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a folder read-only here (needs root and mount namespaces)")
    return prefix


def test_a_read_only_cache_is_loaded_and_a_kernel_it_lacks_compiles_in_memory(tmp_path: Path) -> None:
    """numba alone raises "cannot cache function ... no locator available" at import when no cache folder is
    writable (`docker run --read-only`)."""
    (tmp_path / "kernel.py").write_text(KERNEL)
    filled, empty = tmp_path / "filled", tmp_path / "empty"
    empty.mkdir()
    _call_kernel(tmp_path, filled)
    result, errors = _call_kernel(tmp_path, filled, _read_only(filled, tmp_path))
    assert result == [6.0, False] and "kept in memory only" not in errors
    result, errors = _call_kernel(tmp_path, empty, _read_only(empty, tmp_path))
    assert result == [6.0, True] and "kept in memory only" in errors
    assert list(empty.iterdir()) == []


NRT_KERNEL = """\
import numpy as np
from common.data.jit import numba


@numba.njit(cache=True)
def doubled_total(values):
    return (values * 2).sum()  # a new array: the runtime's allocation and reference counts
"""
# The answer and how often the runtime's functions were compiled (not loaded from the cache folder).
CALL_NRT_KERNEL = """\
import json
import numpy as np
from numba.core.runtime import nrtdynmod
import kernel
compiled, create = [], nrtdynmod.create_nrt_module
nrtdynmod.create_nrt_module = lambda ctx: compiled.append(1) or create(ctx)
print(json.dumps([float(kernel.doubled_total(np.arange(4.0))), len(compiled)]))
"""


def test_the_runtime_functions_compile_once_and_load_from_the_cache_after(tmp_path: Path) -> None:
    (tmp_path / "kernel.py").write_text(NRT_KERNEL)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{REPO}", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def call() -> list:
        return _last_json(CALL_NRT_KERNEL, env)

    assert call() == [12.0, 1]
    kept = list((tmp_path / "cache").glob("nrt-*.nbo"))
    assert len(kept) == 1
    assert call() == [12.0, 0]
    kept[0].write_bytes(b"not a pickle")  # unreadable: compiled again and kept again
    assert call() == [12.0, 1]
    assert call() == [12.0, 0]
