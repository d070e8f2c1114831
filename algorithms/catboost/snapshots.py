"""CatBoost's own snapshots as the job's checkpoint: `<checkpoints>/catboost/snapshot`, resumed exactly.

CatBoost writes the snapshot (its whole training state) every `Checkpoints.INTERVAL_S` seconds and when a
callback ends the fit; `snapshot.json` beside it holds the job's `state`, so a job with other settings or
data starts afresh instead of failing on CatBoost's own check. The callback notes each new snapshot for the
stop message and, after SIGTERM, ends the fit; the caller's `stopping.deferred()` then raises the stop.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from common import stopping
from common.checkpoints import Checkpoints

log = logging.getLogger(__name__)
FOLDER, SNAPSHOT, META = "catboost", "snapshot", "snapshot.json"


class Snapshots:
    def __init__(self, checkpoints: Checkpoints, state: list[Any], iterations: int) -> None:
        self.checkpoints, self.iterations = checkpoints, iterations
        self.folder = checkpoints.directory / FOLDER
        self.path, self.meta = self.folder / SNAPSHOT, self.folder / META
        self.state = json.loads(json.dumps([state, checkpoints.data], default=str))
        saved = _read(self.meta)
        self.resuming = self.path.is_file() and saved.get("state") == self.state
        if self.resuming:
            progress = saved.get("progress") or "a CatBoost snapshot"
            log.info("Resuming from the CatBoost snapshot %s (%s).", self.path, progress)
            checkpoints.note(self.path, progress)
        else:
            if self.path.is_file():
                log.info("Not resuming from %s: it was written by a job with other settings.", self.path)
            self.discard()
        self._mtime = _mtime(self.path)

    def discard(self) -> None:
        """Start afresh: no snapshot, and this job's state written before CatBoost writes one."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.meta.write_text(json.dumps({"state": self.state}))
        self.resuming, self._mtime = False, None

    def params(self, train_dir: Path) -> dict[str, Any]:
        return {"save_snapshot": True, "snapshot_file": str(self.path), "train_dir": str(train_dir),
                "snapshot_interval": int(self.checkpoints.INTERVAL_S), "allow_writing_files": True}

    def after_iteration(self, info: Any) -> bool:
        """CatBoost's callback: False ends the fit, and CatBoost then snapshots `info.iteration` iterations."""
        mtime = _mtime(self.path)
        if mtime != self._mtime:  # written as this iteration began: it holds the ones before
            self._mtime = mtime
            self._note(f"iteration {info.iteration - 1} of {self.iterations}")
        if stopping.requested():
            self._note(f"iteration {info.iteration} of {self.iterations}")
            return False
        return True

    def _note(self, progress: str) -> None:
        self.meta.write_text(json.dumps({"state": self.state, "progress": progress}))
        self.checkpoints.note(self.path, progress)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
