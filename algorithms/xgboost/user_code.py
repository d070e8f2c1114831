"""The user's code for script mode: where it is (a folder, `file://`, a sourcedir.tar.gz, S3), its
requirements.txt, and importing a module from it (serving)."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

from algorithms.xgboost import child
from common.errors import UserError
from common.paths import Paths

log = logging.getLogger(__name__)
COMPAT_DIR = Path(__file__).resolve().parent / "compat"  # holds the importable sagemaker_xgboost_container
REPO_ROOT = Path(__file__).resolve().parents[2]
OPT_ML = "/opt/ml/"
_FETCHED = ".sagemaker-source"  # in an extraction folder: which source it holds, so a second fetch is free
_IMPORTED: set[str] = set()  # module names import_module registered (it never replaces anyone else's)


def local_path(text: str, paths: Paths) -> Path:
    """A local path from a submit directory value; `/opt/ml/...` follows SAGEMAKER_BASE_DIR when moved."""
    path = Path(text[len("file://"):] if text.startswith("file://") else text)
    if not path.exists() and text.startswith(OPT_ML) and paths.base != Path(OPT_ML):
        return paths.base / text[len(OPT_ML):]
    return path


def fetch(source: str, paths: Paths, extract_to: Path) -> Path:
    """The folder holding the code: a local folder as it is; a tarball (local or S3) extracted to `extract_to`."""
    if source.startswith("s3://"):
        return _extract_once(source, extract_to, lambda target: _download(source, target))
    path = local_path(source, paths)
    if path.is_dir():
        return path
    if path.is_file() and tarfile.is_tarfile(path):
        return _extract_once(source, extract_to, lambda target: target.write_bytes(path.read_bytes()))
    what = "is neither a folder nor a tar.gz" if path.exists() else "does not exist"
    raise UserError(f"The code location {source} {what}; sagemaker_submit_directory (or SAGEMAKER_SUBMIT_DIRECTORY) "
                    "must be a folder, a sourcedir.tar.gz or an s3:// URI of one.")


def _extract_once(source: str, target: Path, get: object) -> Path:
    marker = target / _FETCHED
    if marker.is_file() and marker.read_text() == source:
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "sourcedir.tar.gz"
        get(archive)  # type: ignore[operator]
        try:
            with tarfile.open(archive) as tar:  # "data": no absolute paths, links or devices out of target
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(target, filter="data")
                else:  # Python without extraction filters: the same refusals, checked here
                    tar.extractall(target, members=_checked_members(tar, target))
        except (tarfile.TarError, OSError) as exc:
            raise UserError(f"Could not extract the code archive {source}: {exc}.") from None
    marker.write_text(source)
    log.info("Extracted the code from %s into %s.", source, target)
    return target


def _checked_members(tar: tarfile.TarFile, target: Path) -> list[tarfile.TarInfo]:
    """Every member, or a TarError for one that is a device or would land (or link) outside `target`."""
    root = target.resolve()
    members = tar.getmembers()
    for member in members:
        destination = (root / member.name).resolve()
        link = (destination.parent / member.linkname).resolve() if member.issym() else (
            (root / member.linkname).resolve() if member.islnk() else destination)
        inside = all(path == root or root in path.parents for path in (destination, link))
        if member.isdev() or member.isfifo() or not inside or Path(member.name).is_absolute():
            raise tarfile.TarError(f"member '{member.name}' is a device or points outside the code folder")
    return members


def _download(uri: str, target: Path) -> None:
    try:
        import boto3
    except ImportError:
        raise UserError(f"The code is at {uri}, but this image has no boto3 to download it from S3: install boto3 "
                        "in the image, or pass the code as a 'code' channel or a local folder.") from None
    bucket, _, key = uri[len("s3://"):].partition("/")
    try:
        boto3.client("s3").download_file(bucket, key, str(target))
    except Exception as exc:  # noqa: BLE001 - botocore raises many types; all mean the same to the user
        raise UserError(f"Could not download the code from {uri}: {exc}.") from None


def install_requirements(code_dir: Path) -> None:
    """`pip install -r requirements.txt` into the running Python, when the file lists anything."""
    requirements = code_dir / "requirements.txt"
    if not requirements.is_file():
        return
    lines = [line.strip() for line in requirements.read_text(errors="replace").splitlines()]
    if not any(line and not line.startswith("#") for line in lines):
        log.info("%s lists nothing to install.", requirements)
        return
    log.info("Installing the packages in %s.", requirements)
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-r", "requirements.txt"]
    code, tail = child.run(command, code_dir, dict(os.environ))
    if code != 0:
        reason = " | ".join(line for line in tail.strip().splitlines()[-3:] if line.strip())
        raise UserError(f"Installing {requirements.name} from the code folder failed (pip exit code {code}): "
                        f"{reason or 'see the log'}")


def import_module(code_dir: Path, program: str) -> ModuleType:
    """The user's module `program` (train.py or train) from `code_dir`, freshly executed; its folder and the
    compatibility helpers (sagemaker_xgboost_container) become importable."""
    name = program[:-3] if program.endswith(".py") else program
    path = code_dir / f"{name}.py"
    if not path.is_file():
        path = code_dir / name / "__init__.py"
    if not path.is_file():
        raise UserError(f"The inference module {program} is not in {code_dir}; set SAGEMAKER_PROGRAM to a file "
                        "of SAGEMAKER_SUBMIT_DIRECTORY.")
    for folder in (str(COMPAT_DIR), str(code_dir)):
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
