"""The JumpStart artifact's `__models_info__.json`, and incremental training from the `model` channel
(docs/images/lightgbm.md, "Continuing from a model").

The channel holds one `*.tar.gz` (a previous job's model.tar.gz, or JumpStart's base artifact), or its
extracted files when run locally. Training continues from it only when its `__models_info__.json` says
`"is_trained_on_input_data": true`; a base artifact without that flag, or without the file, means
training starts from scratch. A malformed info file fails the job. The channel itself is optional.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import UserError

log = logging.getLogger(__name__)
CHANNEL, INFO_FILE = "model", "__models_info__.json"


@dataclass(frozen=True)
class PreviousModel:
    directory: Path          # the artifact's files, extracted
    info: dict[str, Any]     # its __models_info__.json

    def require(self, name: str, problem_type: str, num_classes: int) -> Path:
        """The path of the model file to continue from, after checking it fits this job's task."""
        path = self.directory / name
        if not path.is_file():
            pickled = " (model.pkl is a pickled JumpStart model, which this image does not load)" \
                if (self.directory / "model.pkl").exists() else ""
            raise UserError(f"The '{CHANNEL}' channel's artifact has no {name}{pickled}; give a model.tar.gz this "
                            "image trained, or drop the channel to train from scratch.")
        theirs = (self.info.get("problem_type"), int(self.info.get("num_classes", num_classes)))
        if theirs[0] is not None and theirs != (problem_type, num_classes):
            raise UserError(f"The '{CHANNEL}' channel's model was trained for {theirs[0]} with {theirs[1]} "
                            f"classes, but this job's labels make it {problem_type} with {num_classes}; "
                            "continue only on data of the same task.")
        return path


@contextlib.contextmanager
def previous_model(data_dir: Path, channel_names: set[str] | list[str]) -> Iterator[PreviousModel | None]:
    """The artifact to continue training from, extracted for the duration of the block, or None."""
    if CHANNEL not in channel_names:
        yield None
        return
    directory = data_dir / CHANNEL
    archives = sorted(p for p in directory.glob("*.tar.gz") if p.is_file())
    if len(archives) > 1:
        raise UserError(f"The '{CHANNEL}' channel must hold one *.tar.gz, found {len(archives)}: "
                        + ", ".join(p.name for p in archives) + ".")
    with tempfile.TemporaryDirectory(prefix="model-channel-") as scratch:
        root = directory
        if archives:
            root = Path(scratch)
            try:
                with tarfile.open(archives[0]) as archive:
                    archive.extractall(root, filter="data")
            except (tarfile.TarError, OSError) as exc:
                raise UserError(f"Cannot extract {archives[0].name} from the '{CHANNEL}' channel: {exc}") from None
        yield _read(root)


def _read(root: Path) -> PreviousModel | None:
    path = root / INFO_FILE
    if not path.is_file():
        log.info("The '%s' channel has no %s; training from scratch.", CHANNEL, INFO_FILE)
        return None
    try:
        info = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{INFO_FILE} in the '{CHANNEL}' channel is not valid JSON: {exc}") from None
    if not isinstance(info, dict):
        raise UserError(f"{INFO_FILE} in the '{CHANNEL}' channel must hold a JSON object, not {type(info).__name__}.")
    if info.get("is_trained_on_input_data") is not True:
        log.info("The '%s' channel's model is not marked is_trained_on_input_data; training from scratch.", CHANNEL)
        return None
    log.info("Continuing training from the '%s' channel's model.", CHANNEL)
    return PreviousModel(root, info)


def artifact_info(previous: PreviousModel | None, **fields: Any) -> dict[str, Any]:
    """The new artifact's __models_info__.json: the input model's info (kept, as JumpStart merges it),
    marked trained on the input data, updated with this job's fields."""
    return {**(previous.info if previous else {}), "is_trained_on_input_data": True, **fields}


def write_info(model_dir: Path, info: dict[str, Any]) -> None:
    (model_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def read_info(model_dir: Path) -> dict[str, Any]:
    """A model directory's info file, {} when it has none (a model trained elsewhere)."""
    path = model_dir / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
