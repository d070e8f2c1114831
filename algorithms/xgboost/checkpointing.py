"""`xgboost-checkpoint.<round>` files for managed spot training (docs/images/xgboost.md, "Checkpoints").

Only the leader writes; a write goes to `<name>.sagemaker-ignore` first (SageMaker does not upload
those) and is renamed. The 5 newest are kept, and a file SageMaker is still uploading is never deleted.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)
PREFIX = "xgboost-checkpoint."
KEEP = 5
_NAME = re.compile(r"^xgboost-checkpoint\.(\d+)$")


class XGBoostCheckpoints:
    def __init__(self, directory: Path, keep: int = KEEP) -> None:
        self.directory, self.keep = directory, keep

    def rounds(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.directory.iterdir() if p.is_file())
        return sorted(int(m.group(1)) for m in found if m)

    def latest(self) -> tuple[int, bytes] | None:
        """(round, model bytes) of the newest checkpoint; rounds count from 0."""
        for number in reversed(self.rounds()):
            try:
                return number, (self.directory / f"{PREFIX}{number}").read_bytes()
            except OSError as exc:
                log.warning("Skipping unreadable checkpoint %s%d: %s", PREFIX, number, exc)
        return None

    def save(self, round_number: int, model: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{PREFIX}{round_number}"
        tmp = path.with_name(path.name + ".sagemaker-ignore")
        tmp.write_bytes(model)
        os.replace(tmp, path)
        for old in self.rounds()[: -self.keep]:
            self._delete(self.directory / f"{PREFIX}{old}")
        return path

    def _delete(self, path: Path) -> None:
        uploading = path.with_name(path.name + ".sagemaker-uploading")
        uploaded = path.with_name(path.name + ".sagemaker-uploaded")
        if uploading.exists() and not uploaded.exists():
            return  # SageMaker is still copying it to S3; a later save deletes it
        path.unlink(missing_ok=True)
        for marker in (uploading, uploaded):
            marker.unlink(missing_ok=True)
