"""The /opt/ml tree, rooted at SAGEMAKER_BASE_DIR when set (tests and local runs)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import UserError

FAILURE_LIMIT = 1024  # bytes of output/failure that SageMaker reports


@dataclass(frozen=True)
class Paths:
    base: Path

    @classmethod
    def from_env(cls) -> Paths:
        return cls(Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")))

    @property
    def config(self) -> Path:
        return self.base / "input" / "config"

    @property
    def hyperparameters(self) -> Path:
        return self.config / "hyperparameters.json"

    @property
    def input_data_config(self) -> Path:
        return self.config / "inputdataconfig.json"

    @property
    def resource_config(self) -> Path:
        return self.config / "resourceconfig.json"

    @property
    def checkpoint_config(self) -> Path:
        return self.config / "checkpointconfig.json"

    @property
    def data(self) -> Path:
        return self.base / "input" / "data"

    @property
    def model(self) -> Path:
        return self.base / "model"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def failure(self) -> Path:
        return self.output / "failure"

    def write_failure(self, message: str) -> None:
        """The failure file SageMaker shows as the job's FailureReason (it keeps the first 1 KiB)."""
        self.output.mkdir(parents=True, exist_ok=True)
        self.failure.write_text(message[:FAILURE_LIMIT])

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def checkpoints(self) -> Path:
        config = read_json_object(self.checkpoint_config, 'like {"LocalPath": "/opt/ml/checkpoints"}')
        configured = config.get("LocalPath")
        return Path(configured) if configured else self.base / "checkpoints"


def read_json(path: Path, default: Any) -> Any:
    """A config file's JSON; `default` when the file is absent."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return default
    except UnicodeDecodeError:
        raise UserError(f"{path.name} is not UTF-8 text.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path.name} is not valid JSON: {exc.msg} at line {exc.lineno}.") from None
    except RecursionError:
        raise UserError(f"{path.name} nests JSON too deeply to read.") from None


def read_json_object(path: Path, example: str) -> dict[str, Any]:
    """A config file that must hold a JSON object (`example` shows one); {} when the file is absent."""
    value = read_json(path, default={})
    if not isinstance(value, dict):
        raise UserError(f"{path.name} must hold a JSON object {example}; it holds {type(value).__name__} "
                        f"{json.dumps(value)[:60]}.")
    return value
