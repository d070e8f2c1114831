"""Save and resume iterative training state under /opt/ml/checkpoints (synced to S3 by SageMaker).

A checkpoint is one .npz of named arrays plus JSON metadata; no pickle. Writes are
atomic (temp file + rename) so a job stopped mid-write resumes from the previous one.
A job resumes only from a checkpoint whose metadata `state` (the settings the saved
arrays depend on) and `data` (the training files' names and sizes) equal its own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import stopping

log = logging.getLogger(__name__)
PREFIX = "checkpoint-"


class Checkpoints:
    # Savers that checkpoint in the middle of a pass save when `due()`: this often, and spending at most
    # a tenth of the time saving when a checkpoint is slow to write.
    INTERVAL_S = 60.0

    def __init__(self, directory: Path, keep: int = 2, data: Any = None) -> None:
        self.directory = directory
        self.keep = keep
        self.data = json.loads(_json(data))
        self.last_path: Path | None = None      # the newest checkpoint this job can resume from,
        self.last_progress: str | None = None   # and how far it got, in words ("epoch 3 of 10")
        self._due_at = time.monotonic() + self.INTERVAL_S

    def due(self) -> bool:
        """Time for a mid-pass checkpoint: INTERVAL_S after the last one, or SIGTERM has arrived."""
        return time.monotonic() >= self._due_at or stopping.requested()

    def save(self, step: int, arrays: dict[str, np.ndarray], meta: dict[str, Any],
             progress: str | None = None) -> Path:
        """Write checkpoint `step` (which grows during a job) and keep the `keep` newest up to it."""
        started = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{PREFIX}{step:08d}.npz"
        tmp = path.with_name(path.name + ".tmp")
        header = {"step": step, **meta}
        header.update({k: v for k, v in (("data", self.data), ("progress", progress)) if v is not None})
        with open(tmp, "wb") as out:
            np.savez(out, __meta__=np.frombuffer(_json(header).encode(), np.uint8), **arrays)
        os.replace(tmp, path)
        # Checkpoints numbered above this one are another job's (a different `state`): left alone.
        for old in [p for p in self._all() if _step(p) <= step][: -self.keep]:
            old.unlink(missing_ok=True)
        self._due_at = time.monotonic() + max(self.INTERVAL_S, 9 * (time.monotonic() - started))
        self.note(path, progress or f"step {step}")
        return path

    def note(self, path: Path, progress: str) -> None:
        """A checkpoint this job can resume from: written by `save`, or by a library (CatBoost's snapshot)."""
        self.last_path, self.last_progress = path, progress

    def latest(self, state: Any = None) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """(arrays, meta) of the newest readable checkpoint; with `state`, of the newest whose state equals it."""
        wanted = None if state is None else json.loads(_json(state))
        for path in reversed(self._all()):
            try:
                with np.load(path, allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files if k != "__meta__"}
                    meta = json.loads(data["__meta__"].tobytes())
            except (OSError, ValueError, KeyError):
                continue  # a damaged file: fall back to the one before
            if wanted is not None and (meta.get("state"), meta.get("data")) != (wanted, self.data):
                log.info("Not resuming from %s: it was written by a job with other settings or data.", path.name)
                continue
            self.note(path, meta.get("progress") or f"step {meta.get('step')}")
            return arrays, meta
        return None

    def _all(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted((p for p in self.directory.glob(f"{PREFIX}*.npz") if _step(p) >= 0), key=_step)


def data_files(channels: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """Every channel's files as [name, size] pairs (none in Pipe mode): the `data` of a job's checkpoints."""
    return {name: [[str(p.relative_to(c.data_dir / name)), p.stat().st_size] for p in c.files()]
            for name, c in sorted(channels.items())}


def job_state(hyperparameters: Any, *more: Any) -> list[Any]:
    """A checkpoint `state`: every hyperparameter, and what else the saved arrays depend on (host rank, count)."""
    return [dataclasses.asdict(hyperparameters), *more]


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def _step(path: Path) -> int:
    number = path.name[len(PREFIX):-len(".npz")]
    return int(number) if number.isdigit() else -1
