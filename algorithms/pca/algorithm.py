"""The PCA image: training, artifact, inference (docs/images/pca.md).

The artifact `model_algo-1` is an MXNet NDArray dict {s: (k,), v: (d, k), mean: (1, d)} in
ascending order of singular value (the last column of v is the most significant), float32;
`mean` is there only when subtract_mean was true, and serving centers the rows exactly when it is.
A projection is (x − mean) · v, unscaled, in the same ascending order.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from algorithms.pca.hyperparameters import AUTO_EXTRA, PCAHyperparameters
from algorithms.pca.solvers import Blocks, Fit, fit_randomized, fit_regular, randomized_passes
from common.algorithm import Algorithm, TrainingJob
from common.channels import ChannelSpec, DataChannel
from common.data import content_types as ct
from common.data.batch import Batch, Features, issparse
from common.data.columns import Columns, ResponseLayout
from common.data.ndarray_file import load_ndarrays, save_ndarrays
from common.errors import UserError
from common.metrics import MetricDefinition
from common.serving.request import Options

log = logging.getLogger(__name__)
MODEL_FILE = "model_algo-1"
# Rows are read in blocks of about this many bytes of float32 features (or mini_batch_size rows if
# that is more): the sums are additive, so the block size changes speed and memory, never the result.
# BLAS syrk (regular) runs best on cache-sized blocks, the randomized passes' GEMMs on tall ones.
BLOCK_BYTES = {"regular": 1 << 20, "randomized": 16 << 20}


class PCA(Algorithm[PCAHyperparameters]):
    name = "pca"
    Hyperparameters = PCAHyperparameters
    channels = (
        ChannelSpec("train", required=True, csv_label_size=0),
        ChannelSpec("test", csv_label_size=0),
    )
    # Not documented for the real image (docs/images/pca.md, "Metrics"): mean squared reconstruction error per test row.
    metrics = (MetricDefinition("test:reconstruction_error", style="test_score"),)
    metrics_note = ("no train metric is printed. test:reconstruction_error is the mean over the test channel's rows "
                    "of |x - x v v'|^2 (x centred by the training mean when subtract_mean is true), measured once "
                    "with the final components after training.")
    response_types = (ct.JSON, ct.JSONLINES, ct.RECORDIO, ct.CSV)
    response_layout = ResponseLayout(envelope="projections")

    def __init__(self, s: np.ndarray, v: np.ndarray, mean: np.ndarray | None = None) -> None:
        self.s = np.ascontiguousarray(s, dtype=np.float32).reshape(-1)
        self.v = np.ascontiguousarray(v, dtype=np.float32)
        self._v64 = self.v.astype(np.float64)
        self.mean = None if mean is None else np.ascontiguousarray(mean, dtype=np.float32).reshape(1, -1)

    @property
    def feature_dim(self) -> int:
        return int(self.v.shape[0])

    @property
    def num_components(self) -> int:
        return int(self.v.shape[1])

    # ---- training -------------------------------------------------------------------------
    @classmethod
    def train(cls, job: TrainingJob[PCAHyperparameters]) -> PCA | None:
        hp = job.hyperparameters
        train = job.channels["train"]
        started = time.perf_counter()
        if hp.algorithm_mode == "regular":
            if hp.extra_components != AUTO_EXTRA:
                log.info("extra_components=%d is used only in randomized mode; ignored.", hp.extra_components)
            log.info("regular mode: %d components of %d features, one pass", hp.num_components, hp.feature_dim)
            _check_scatter_fits(hp.feature_dim)
            fit = fit_regular(channel_blocks(train, hp), hp.feature_dim, hp.num_components, hp.subtract_mean,
                              job.collective, job.checkpoints)
            job.metrics.progress(100.0)
        else:
            passes = randomized_passes(hp.feature_dim, hp.sketch_size)
            log.info("randomized mode: %d components of %d features, sketch of %d columns, %d passes",
                     hp.num_components, hp.feature_dim, hp.sketch_size, passes)
            fit = fit_randomized(channel_blocks(train, hp), hp.feature_dim, hp.num_components, hp.sketch_size,
                                 hp.subtract_mean, job.collective, job.checkpoints, job.metrics.progress)
        job.metrics.throughput(fit.rows_read / max(time.perf_counter() - started, 1e-9))
        model = cls.from_fit(fit) if job.cluster.is_leader else None
        if model is not None:
            log.info("singular values, ascending: %s", model.s.tolist())
        _score_test(model, hp, job)
        return model

    @classmethod
    def from_fit(cls, fit: Fit) -> PCA:
        if fit.s is None or fit.v is None:
            raise RuntimeError("Only the leader's fit holds the components.")
        return cls(fit.s, fit.v, fit.mean)

    # ---- artifact ---------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {"s": self.s, "v": self.v}
        if self.mean is not None:
            arrays["mean"] = self.mean
        return arrays

    def save(self, model_dir: Path) -> None:
        save_ndarrays(model_dir / MODEL_FILE, self.arrays())

    @classmethod
    def load(cls, model_dir: Path) -> PCA:
        path = model_dir / MODEL_FILE
        if not path.is_file():
            raise UserError(f"{MODEL_FILE} is missing from the model directory {model_dir}.")
        arrays = load_ndarrays(path)
        if isinstance(arrays, list):  # saved without names: take them in the order s, v, mean
            arrays = dict(zip(("s", "v", "mean"), arrays))
        return cls(*_checked_arrays(arrays))

    def export(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.arrays().items()}

    # ---- inference --------------------------------------------------------------------------
    def warm_up(self) -> None:
        self.predict(Batch(np.zeros((1, self.feature_dim), np.float32)), Options())

    def predict(self, batch: Batch, options: Options) -> Columns:
        batch.check_width(self.feature_dim, "the model's feature_dim")
        return {"projection": self.project(batch.features)}

    def project(self, features: Features) -> np.ndarray:
        """(x − mean) · v in float32, one row per input row, ascending order like `s`."""
        if issparse(features) and self.mean is None:
            return np.asarray(features @ self.v, dtype=np.float32)
        # In float64, rounded once to float32: BLAS takes another kernel for one row than for many, and a row's
        # projection must not depend on the rows sent with it (batch transform's SingleRecord vs MultiRecord).
        return (self._centred(features) @ self._v64).astype(np.float32)

    def squared_residuals(self, features: Features) -> np.ndarray:
        """|x_c − x_c v vᵀ|² per row (x_c the centered row), in float64."""
        x = self._centred(features)
        projected = x @ self._v64
        return np.maximum(np.einsum("ij,ij->i", x, x) - np.einsum("ij,ij->i", projected, projected), 0.0)

    def _centred(self, features: Features) -> np.ndarray:
        """The rows in float64, less the training mean where there is one."""
        x = np.asarray(features.toarray() if issparse(features) else features, dtype=np.float64)
        return x if self.mean is None else x - self.mean


def block_rows(hp: PCAHyperparameters, mode: str | None = None) -> int:
    return max(hp.mini_batch_size, BLOCK_BYTES[mode or hp.algorithm_mode] // (4 * hp.feature_dim))


def _check_scatter_fits(feature_dim: int) -> None:
    """Regular mode holds feature_dim² float64 numbers about four times over (sums, reduced copy, eigh)."""
    needed = 4 * 8 * feature_dim ** 2
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if needed > physical:
        raise UserError(f"algorithm_mode=regular needs about {needed / 2**30:.1f} GiB for feature_dim={feature_dim} "
                        f"(a {feature_dim} x {feature_dim} matrix), more than this machine's "
                        f"{physical / 2**30:.1f} GiB; use algorithm_mode=randomized.")


def channel_blocks(channel: DataChannel, hp: PCAHyperparameters) -> Blocks:
    def read(epoch: int) -> Iterator[Features]:
        # The sums do not depend on block sizes, so blocks are taken as read: no copies at file ends.
        for batch in channel.batches(block_rows(hp), epoch, hp.feature_dim, exact=False):
            yield batch.features

    return read


def _checked_arrays(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    s, v, mean = arrays.get("s"), arrays.get("v"), arrays.get("mean")
    if s is None or v is None:
        raise UserError(f"{MODEL_FILE} must hold the arrays 's' and 'v' (and 'mean' when the data was "
                        f"centered); it holds {sorted(arrays)}.")
    if v.ndim != 2 or 0 in v.shape:
        raise UserError(f"{MODEL_FILE} array 'v' must have shape (feature_dim, num_components); got {v.shape}.")
    if s.size != v.shape[1]:
        raise UserError(f"{MODEL_FILE} array 's' must hold {v.shape[1]} values, one per column of 'v'; "
                        f"got shape {s.shape}.")
    if mean is not None and mean.size != v.shape[0]:
        raise UserError(f"{MODEL_FILE} array 'mean' must hold {v.shape[0]} values, one per row of 'v'; "
                        f"got shape {mean.shape}.")
    return s, v, mean


def _score_test(model: PCA | None, hp: PCAHyperparameters, job: TrainingJob[PCAHyperparameters]) -> None:
    """Mean squared reconstruction error of the test rows; sharded test data is summed over hosts."""
    test, sharded = job.test_channel()
    if test is None:
        return
    if sharded:
        arrays = job.collective.broadcast(model.arrays() if model else None, root=0)
        model = PCA(arrays["s"], arrays["v"], arrays.get("mean"))
    squared, rows = 0.0, 0
    for batch in test.batches(block_rows(hp, "regular"), 0, hp.feature_dim):
        squared += float(model.squared_residuals(batch.features).sum())
        rows += len(batch)
    if sharded:
        squared, rows = job.collective.allreduce_sum(np.array([squared, float(rows)])).tolist()
    if not job.cluster.is_leader:
        return
    if rows == 0:
        raise UserError("The test channel holds no data rows.")
    job.emit("test:reconstruction_error", squared / rows)
