"""Script-mode serving: which user module answers /invocations, fetched and imported.

The module is SAGEMAKER_PROGRAM (the SDK sets it with SAGEMAKER_SUBMIT_DIRECTORY), or the `code/inference.py`
an SDK-repacked model.tar.gz carries. Its code comes from SAGEMAKER_SUBMIT_DIRECTORY (a folder, `file://`, a
sourcedir.tar.gz, or S3), else the model's code/ folder, else /opt/ml/code. The server's parent fetches it and
installs its requirements.txt once (`prepare`); each worker imports it (`load`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

from common.errors import UserError
from common.paths import Paths
from common.script_mode import ScriptMode, code
from common.script_mode.module import UserModule

log = logging.getLogger(__name__)
PROGRAM_VAR, SUBMIT_VAR, REGION_VAR = "SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY", "SAGEMAKER_REGION"
SAVED_MODULE = "inference.py"  # what the SDK's repack puts in model.tar.gz's code/ (the toolkits' default name)
_IMPORTED: set[str] = set()  # module names import_module registered (it never replaces anyone else's)


def locate(model_dir: Path) -> tuple[str, str] | None:
    """(program, code source) when serving a user module; None in algorithm mode."""
    program = os.environ.get(PROGRAM_VAR, "").strip()
    saved = model_dir / "code"
    if not program:
        return (SAVED_MODULE, str(saved)) if (saved / SAVED_MODULE).is_file() else None
    source = os.environ.get(SUBMIT_VAR, "").strip()
    if not source:
        source = str(saved if (saved / program).is_file() else Paths.from_env().base / "code")
    return program, source


def code_folder(source: str) -> Path:
    paths = Paths.from_env()
    return code.fetch(source, paths, paths.base / "code", os.environ.get(REGION_VAR))


def prepare(model_dir: Path, mode: ScriptMode) -> None:
    """In the server's parent: fetch the code once and install its requirements.txt."""
    found = _required(locate(model_dir), mode)
    if found is not None:
        log.info("Serving with the user module %s from %s.", *found)
        code.install_requirements(code_folder(found[1]))


def load(model_dir: Path, mode: ScriptMode) -> UserModule | None:
    """The user's module as the model, or None: the image serves its own algorithm."""
    found = _required(locate(model_dir), mode)
    if found is None:
        return None
    program, source = found
    return UserModule(import_module(code_folder(source), program, mode.paths), model_dir, mode)


def _required(found: tuple[str, str] | None, mode: ScriptMode) -> tuple[str, str] | None:
    if found is None and mode.scripts_only:
        raise UserError(f"This image serves inference modules only, as SageMaker's {mode.framework} framework "
                        f"container does: set {PROGRAM_VAR} (and {SUBMIT_VAR}), or put code/{SAVED_MODULE} in "
                        "the model.", status=500)
    return found


def import_module(code_dir: Path, program: str, paths: tuple[Path, ...] = ()) -> ModuleType:
    """The user's module `program` (inference.py or inference) from `code_dir`, freshly executed; its folder
    (with the SDK's `dependencies` in it) and the image's compatibility packages become importable."""
    name = program[:-3] if program.endswith(".py") else program
    path = code_dir / f"{name}.py"
    if not path.is_file():
        path = code_dir / name / "__init__.py"
    if not path.is_file():
        raise UserError(f"The inference module {program} is not in {code_dir}; set {PROGRAM_VAR} to a file "
                        f"of {SUBMIT_VAR}.", status=500)
    for folder in (*(str(p) for p in reversed(paths)), str(code_dir)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    if name not in sys.modules or name in _IMPORTED:  # registered, so pickles of its classes load
        sys.modules[name] = module
        _IMPORTED.add(name)
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:  # noqa: BLE001 - the user's module: its error, said clearly
        log.exception("Importing %s failed.", path)
        raise UserError(f"Importing the inference module {path.name} failed: {type(exc).__name__}: {exc}",
                        status=500) from None
    return module
