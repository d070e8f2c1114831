"""The set of models a multi-model endpoint has loaded, in a folder every worker of one server shares:
one JSON record per model, changed only under an exclusive file lock, a generation number bumped on every
change, and each worker's acknowledgement of the generation it has caught up with."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    name: str
    url: str          # as POST /models gave it
    path: str         # the folder the model loads from: `url`, or where its archive was extracted
    size: int         # the bytes each worker's copy is taken to hold
    id: str           # fresh for every load: a model reloaded under the same name is another model
    extracted: bool   # `path` is ours, removed on unload


class Registry:
    """The loaded set, in a folder every worker of one server shares."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.records_dir, self.acks_dir, self.extracted_dir = root / "records", root / "workers", root / "extracted"

    @classmethod
    def create(cls) -> Registry:
        """A fresh folder, removed when the creating process exits (not when a forked worker does)."""
        registry = cls(Path(tempfile.mkdtemp(prefix="sagemaker-models-")))
        for folder in (registry.records_dir, registry.acks_dir, registry.extracted_dir):
            folder.mkdir()
        registry._write(registry.root / "generation", "0")
        owner = os.getpid()
        atexit.register(lambda: os.getpid() == owner and shutil.rmtree(registry.root, ignore_errors=True))
        return registry

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive among every worker and thread: flock belongs to the open file, and each caller opens it."""
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def generation(self) -> int:
        return int((self.root / "generation").read_text())

    def get(self, name: str) -> Record | None:
        try:
            return Record(**json.loads(self._record_path(name).read_text()))
        except FileNotFoundError:
            return None

    def records(self) -> list[Record]:
        """Every loaded model, by name."""
        found = []
        for path in self.records_dir.glob("*.json"):
            with contextlib.suppress(FileNotFoundError):  # unloaded while listing
                found.append(Record(**json.loads(path.read_text())))
        return sorted(found, key=lambda record: record.name)

    def add(self, record: Record) -> int:
        """Under `locked()`; the new generation."""
        self._write(self._record_path(record.name), json.dumps(asdict(record)))
        return self._bump()

    def remove(self, name: str) -> tuple[Record, int] | None:
        """Under `locked()`; the record removed and the new generation, or None when `name` is not loaded."""
        record = self.get(name)
        if record is None:
            return None
        self._record_path(name).unlink()
        return record, self._bump()

    def acknowledge(self, generation: int) -> None:
        """This process holds no copy of a model unloaded by `generation`."""
        self._write(self.acks_dir / str(os.getpid()), str(generation))

    def wait_for_workers(self, generation: int, timeout: float) -> bool:
        """Whether every live worker acknowledged `generation` within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            behind = [pid for pid, acked in self._acknowledged() if acked < generation and _alive(pid)]
            if not behind:
                return True
            if time.monotonic() > deadline:
                log.warning("Workers %s did not let go of unloaded models within %g s.", behind, timeout)
                return False
            time.sleep(0.01)

    def _acknowledged(self) -> list[tuple[int, int]]:
        acks = []
        for path in self.acks_dir.iterdir():
            with contextlib.suppress(FileNotFoundError, ValueError):
                acks.append((int(path.name), int(path.read_text())))
        return acks

    def _bump(self) -> int:
        generation = self.generation() + 1
        self._write(self.root / "generation", str(generation))
        return generation

    def _record_path(self, name: str) -> Path:
        return self.records_dir / (hashlib.sha256(name.encode()).hexdigest() + ".json")

    @staticmethod
    def _write(path: Path, text: str) -> None:
        """Readers see the old content or the new, never part of it."""
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        partial.write_text(text)
        os.replace(partial, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
