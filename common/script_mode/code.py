"""The user's code: where it is (a folder, `file://`, a sourcedir.tar.gz, or one on S3), extracted once per
source into the code folder, and its requirements.txt installed with pip into the running Python."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from common.errors import UserError
from common.paths import Paths
from common.script_mode import child, s3

log = logging.getLogger(__name__)
OPT_ML = "/opt/ml/"
_FETCHED = ".sagemaker-source"  # in an extraction folder: which source it holds, so a second fetch is free


def local_path(text: str, paths: Paths) -> Path:
    """A local path from a submit directory value; `/opt/ml/...` follows SAGEMAKER_BASE_DIR when moved."""
    path = Path(text[len("file://"):] if text.startswith("file://") else text)
    if not path.exists() and text.startswith(OPT_ML) and paths.base != Path(OPT_ML):
        return paths.base / text[len(OPT_ML):]
    return path


def fetch(source: str, paths: Paths, extract_to: Path, region: str | None = None) -> Path:
    """The folder holding the code: a local folder as it is; a tarball (local or S3) extracted to `extract_to`."""
    if source.startswith("s3://"):
        return _extract_once(source, extract_to, lambda target: s3.download(source, target, region))
    path = local_path(source, paths)
    if path.is_dir():
        return path
    if path.is_file() and tarfile.is_tarfile(path):
        return _extract_once(source, extract_to, lambda target: target.write_bytes(path.read_bytes()))
    what = "is neither a folder nor a tar.gz" if path.exists() else "does not exist"
    raise UserError(f"The code location {source} {what}; sagemaker_submit_directory (or SAGEMAKER_SUBMIT_DIRECTORY) "
                    "must be a folder, a sourcedir.tar.gz or an s3:// URI of one.")


def _extract_once(source: str, target: Path, get: Callable[[Path], None]) -> Path:
    marker = target / _FETCHED
    if marker.is_file() and marker.read_text() == source:
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "sourcedir.tar.gz"
        get(archive)
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


def install_requirements(code_dir: Path) -> None:
    """`pip install -r requirements.txt` into the running Python, when the file lists anything."""
    requirements = code_dir / "requirements.txt"
    if not requirements.is_file():
        return
    lines = [line.strip() for line in requirements.read_text(errors="replace").splitlines()]
    if not any(line and not line.startswith("#") for line in lines):
        log.info("%s lists nothing to install.", requirements)
        return
    if importlib.util.find_spec("pip") is None:
        raise UserError(f"The code folder has a {requirements.name}, but this image has no pip to install it.")
    log.info("Installing the packages in %s.", requirements)
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-r", "requirements.txt"]
    code, tail = child.run(command, code_dir, dict(os.environ))
    if code != 0:
        reason = " | ".join(line for line in tail.strip().splitlines()[-3:] if line.strip())
        raise UserError(f"Installing {requirements.name} from the code folder failed (pip exit code {code}): "
                        f"{reason or 'see the log'}")
