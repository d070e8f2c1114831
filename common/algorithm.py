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
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np

from common.channels import SHARDED, ChannelSpec, DataChannel
from common.checkpoints import Checkpoints
from common.cluster.collective import Cluster, Collective
from common.data import content_types as ct
from common.data.batch import Batch
from common.data.columns import DEFAULT_LAYOUT, Columns, ResponseLayout
from common.errors import UserError
from common.hyperparameters import Hyperparameters
from common.metrics import MetricDefinition, MetricsEmitter
from common.paths import Paths

if TYPE_CHECKING:
    from common.data.content_types import MediaType
    from common.data.registry import RequestReader
    from common.script_mode import ScriptMode
    from common.serving.request import Options

log = logging.getLogger(__name__)
H = TypeVar("H", bound=Hyperparameters)


@dataclass
class TrainingJob(Generic[H]):
    """Everything `Algorithm.train` may use."""

    hyperparameters: H
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


class Algorithm(ABC, Generic[H]):
    name: ClassVar[str]
    Hyperparameters: ClassVar[type[Hyperparameters]]
    channels: ClassVar[tuple[ChannelSpec, ...]]
    metrics: ClassVar[tuple[MetricDefinition, ...]] = ()
    # Logged when training starts: which data each train/test metric line is measured on.
    metrics_note: ClassVar[str] = ""
    default_content_type: ClassVar[str] = ct.RECORDIO   # channels whose ContentType is missing
    request_types: ClassVar[tuple[str, ...]] = (ct.CSV, ct.JSON, ct.JSONLINES, ct.RECORDIO)
    response_types: ClassVar[tuple[str, ...]] = (ct.JSON, ct.JSONLINES, ct.RECORDIO, ct.CSV)
    default_accept: ClassVar[str] = ct.JSON
    # How the writers lay out `predict`'s columns (the JSON envelope, number style); a model may set its own
    # when it is loaded (XGBoost's, from its environment).
    response_layout: ResponseLayout = DEFAULT_LAYOUT
    # An empty (or blank) request body: None answers the shared 400 after Content-Type and Accept are checked;
    # a status (XGBoost: 204, as its image does) answers that status with an empty body before anything else.
    empty_body_status: ClassVar[int | None] = None
    # NaN (an empty field) is a missing value the model handles (XGBoost, LightGBM, CatBoost), or an error
    # naming row and column; infinite values are an error either way (Batch.check_finite).
    handles_missing_values: ClassVar[bool] = False
    # Framework (script) mode, for an image that also runs the user's own scripts (common/script_mode):
    # training runs the job's script when it names one, serving the model's inference module.
    script_mode: ClassVar[ScriptMode | None] = None

    @classmethod
    @abstractmethod
    def train(cls, job: TrainingJob[H]) -> Algorithm | None:
        """Fit on the job's channels; the leader returns the model, other hosts None."""

    @abstractmethod
    def save(self, model_dir: Path) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, model_dir: Path) -> Algorithm: ...

    @abstractmethod
    def predict(self, batch: Batch, options: Options) -> Columns:
        """Named columns, one entry per row of `batch` (already checked non-empty and by `check_finite`)."""

    def request_reader(self, media: MediaType) -> RequestReader:
        """The reader for a request body of this content type: the shared one, unless a model reads its
        own (CatBoost models trained on string categories keep the strings of a CSV request)."""
        from common.data.registry import reader_for

        return reader_for(media, labelled=False)

    def warm_up(self) -> None:
        """Compile kernels and touch what the first request would, so it pays nothing extra."""
        return None

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
