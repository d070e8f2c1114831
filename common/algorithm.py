"""The seam: what an algorithm declares and implements to become an image.

An algorithm package `algorithms/<name>/` exposes `ALGORITHM`, a subclass of
`Algorithm`. Everything else (config files, channels, readers, encoders,
metrics, serving, hosts) is done by `common`.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from common import content_types as ct
from common.batch import Batch
from common.channels import SHARDED, ChannelSpec, DataChannel
from common.checkpoints import Checkpoints
from common.content_types import MediaType
from common.distributed import Cluster, Collective
from common.encoders import Columns
from common.errors import UserError
from common.hyperparameters import Hyperparameters
from common.metrics import MetricDefinition, MetricsEmitter
from common.paths import Paths

if TYPE_CHECKING:
    from common.script_mode import ScriptMode

log = logging.getLogger(__name__)


@dataclass
class TrainingJob:
    """Everything `Algorithm.train` may use."""

    hyperparameters: Any
    channels: dict[str, DataChannel]
    paths: Paths
    cluster: Cluster
    collective: Collective
    metrics: MetricsEmitter
    checkpoints: Checkpoints
    definitions: dict[str, MetricDefinition] = field(default_factory=dict)

    def channel(self, name: str) -> DataChannel | None:
        return self.channels.get(name)

    def test_channel(self) -> tuple[DataChannel | None, bool]:
        """The test channel this host scores, and whether it is sharded across hosts (then every
        host scores its share and the sums are reduced). None when there is no test channel, or
        when it is replicated and this host is not the leader (the leader alone scores it)."""
        test = self.channels.get("test")
        if test is None:
            if self.cluster.is_leader:
                log.info("Test data is not provided.")
            return None, False
        sharded = test.config.distribution == SHARDED and self.collective.world_size > 1
        if not sharded and not self.cluster.is_leader:
            return None, False
        return test, sharded

    def emit(self, metric_name: str, value: float, epoch: int | None = None) -> None:
        self.metrics.emit(self.definitions[metric_name], value, epoch)


class Algorithm(ABC):
    name: ClassVar[str]
    Hyperparameters: ClassVar[type[Hyperparameters]]
    channels: ClassVar[tuple[ChannelSpec, ...]]
    metrics: ClassVar[tuple[MetricDefinition, ...]] = ()
    default_content_type: ClassVar[str] = ct.RECORDIO   # channels whose ContentType is missing
    request_types: ClassVar[tuple[str, ...]] = (ct.CSV, ct.JSON, ct.JSONLINES, ct.RECORDIO)
    response_types: ClassVar[tuple[str, ...]] = (ct.JSON, ct.JSONLINES, ct.RECORDIO, ct.CSV)
    default_accept: ClassVar[str] = ct.JSON
    envelope: ClassVar[str] = "predictions"            # the JSON response's top-level key
    # An empty (or blank) request body: None answers the shared 400 after Content-Type and Accept are checked;
    # a status (XGBoost: 204, as its image does) answers that status with an empty body before anything else.
    empty_body_status: ClassVar[int | None] = None
    # NaN (an empty field) is a missing value the model handles (XGBoost, LightGBM, CatBoost), or an error
    # naming row and column; infinite values are an error either way (Batch.check_finite).
    handles_missing_values: ClassVar[bool] = False
    # Framework (script) mode, for an image that also runs the user's own scripts (common/script_mode).
    script_mode: ClassVar[ScriptMode | None] = None

    @classmethod
    @abstractmethod
    def train(cls, job: TrainingJob) -> Algorithm | None:
        """Fit on the job's channels; the leader returns the model, other hosts None."""

    @abstractmethod
    def save(self, model_dir: Path) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, model_dir: Path) -> Algorithm: ...

    @abstractmethod
    def predict(self, batch: Batch, accept: MediaType) -> Columns:
        """Named columns, one entry per row of `batch` (already checked non-empty and by `check_finite`)."""

    def encode(self, columns: Columns, accept: MediaType) -> bytes:
        """The response body for `predict`'s columns: the shared encoders, unless an image answers otherwise."""
        from common.encoders import encode

        return encode(columns, accept.name, self.envelope)

    def warm_up(self) -> None:
        """Compile kernels and touch what the first request would, so it pays nothing extra."""
        return None

    def respond(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str] | None:
        """The whole response (body, Content-Type) when the model's own code parses and encodes requests
        (XGBoost's user inference modules); None: the shared readers, `predict` and `encode` answer."""
        return None

    @classmethod
    def run_user_script(cls, paths: Paths) -> int | None:
        """Run the job's own training script instead when the job names one (script mode), before any
        hyperparameter is checked: the exit code. None: train as declared."""
        if cls.script_mode is None:
            return None
        from common.script_mode import training

        return training.run_if_requested(paths, cls.script_mode)

    @classmethod
    def prepare_serving(cls, model_dir: Path) -> None:
        """Once, in the server's parent process before workers fork: fetch or install what every worker
        needs (script mode: the user's inference code and its requirements.txt)."""
        if cls.script_mode is not None:
            from common.script_mode import serving

            serving.prepare(model_dir, cls.script_mode)

    @classmethod
    def user_module(cls, model_dir: Path) -> Algorithm | None:
        """The user's inference module as the model when one is named (script mode): an image's `load`
        returns it, if not None, before loading anything of its own."""
        if cls.script_mode is None:
            return None
        from common.script_mode import serving

        return serving.load(model_dir, cls.script_mode)

    @classmethod
    def warm_up_kernels(cls) -> None:
        """Compile (fill numba's cache for) the algorithm's kernels without a model: image build time."""
        return None

    def export(self) -> dict[str, np.ndarray]:
        """The model's arrays, named, for `inspect`/`export`."""
        raise UserError(f"{self.name} models cannot be exported yet.")

    @classmethod
    def describe(cls) -> dict[str, Any]:
        from common.metrics import PROGRESS, THROUGHPUT

        return {
            "algorithm": cls.name,
            "hyperparameters": cls.Hyperparameters.specs(),
            "channels": [c.to_json() for c in cls.channels],
            "metric_definitions": [m.to_json() for m in cls.metrics] + [PROGRESS, THROUGHPUT],
            "inference": {
                "content_types": list(cls.request_types),
                "accept_types": list(cls.response_types),
                "default_accept": cls.default_accept,
            },
        }


def load_algorithm(name: str | None) -> type[Algorithm]:
    """`algorithms.<name>.ALGORITHM`, with a clear error for a missing or unknown name."""
    if not name:
        raise UserError("Set the ALGORITHM environment variable to an algorithm folder name, e.g. kmeans.")
    if not name.isidentifier():
        raise UserError(f"ALGORITHM='{name}' is not a valid algorithm folder name.")
    try:
        module = importlib.import_module(f"algorithms.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in (f"algorithms.{name}", "algorithms"):
            raise UserError(f"ALGORITHM='{name}' names no folder under algorithms/.") from None
        raise
    return module.ALGORITHM
