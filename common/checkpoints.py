"""Save and resume iterative training state under /opt/ml/checkpoints (synced to S3 by SageMaker).

A checkpoint is one .npz of named arrays plus JSON metadata; no pickle. Writes are
atomic (temp file + rename) so a job stopped mid-write resumes from the previous one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

PREFIX = "checkpoint-"


class Checkpoints:
    def __init__(self, directory: Path, keep: int = 2) -> None:
        self.directory = directory
        self.keep = keep

    def save(self, step: int, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{PREFIX}{step:08d}.npz"
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as out:
            np.savez(out, __meta__=np.frombuffer(json.dumps({"step": step, **meta}).encode(), np.uint8),
                     **arrays)
        os.replace(tmp, path)
        for old in self._all()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        for path in reversed(self._all()):
            try:
                with np.load(path, allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files if k != "__meta__"}
                    meta = json.loads(data["__meta__"].tobytes())
                return arrays, meta
            except (OSError, ValueError, KeyError):
                continue  # a damaged file: fall back to the one before
        return None

    def _all(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"{PREFIX}*.npz"))
