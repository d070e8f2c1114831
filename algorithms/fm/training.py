"""The training loop: parameters and Adam state, CSR blocks from the channel, epochs, hosts, checkpoints.

Hosts (ShardedByS3Key or not) train on what they read and combine every few mini-batches (hosts.py).
Every host starts from the same seeded initialisation.
In File mode the decoded rows are kept in memory after the first epoch when they fit (CACHE_FRACTION of
physical memory); Pipe mode reads its FIFO every epoch, as SageMaker feeds it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from algorithms.fm.hosts import HostSync, chunks, round_steps
from algorithms.fm.hyperparameters import FMHyperparameters
from common.algorithm import TrainingJob
from common.channels import PIPE, DataChannel
from common.data.batch import Batch
from common.errors import UserError
from common.imports import LazyModule
from common.progress import Progress

kernels = LazyModule("algorithms.fm.kernels")

log = logging.getLogger(__name__)
SEED = 0
BLOCK_ROWS = 1 << 15          # rows per read; mini-batches are cut inside blocks
CACHE_FRACTION = 0.25
# float32 weight and two Adam moments, the float64 draw at initialisation, the kernel's scratch
STATE_BYTES_PER_WEIGHT = 24


@dataclass
class Rows:
    """A block of labelled rows in the kernels' CSR form."""

    indptr: np.ndarray   # int64 (n + 1,)
    indices: np.ndarray  # int32
    data: np.ndarray     # float32
    labels: np.ndarray   # float32 (n,)

    def __len__(self) -> int:
        return self.indptr.size - 1

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.data.nbytes + self.labels.nbytes


def csr_parts(features: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr int64, indices int32, data float32) of a CSR or dense block, zeros of dense rows dropped."""
    if type(features).__module__.startswith("scipy.sparse"):
        return (features.indptr.astype(np.int64, copy=False), features.indices.astype(np.int32, copy=False),
                features.data.astype(np.float32, copy=False))
    dense = np.asarray(features, np.float32)
    mask = dense != 0
    indptr = np.zeros(dense.shape[0] + 1, np.int64)
    np.cumsum(mask.sum(axis=1), out=indptr[1:])
    return indptr, np.nonzero(mask)[1].astype(np.int32), dense[mask]


def labelled_rows(batch: Batch, classifier: bool) -> Rows:
    """The block's rows and labels; UserError for a missing, wide or (classifier) non-0/1 label."""
    if batch.labels is None:
        raise UserError(f"{batch.where(0).capitalize()} has no label; every training and test record needs "
                        "label[\"values\"] with one value.")
    if batch.labels.shape[1] != 1:
        raise UserError(f"{batch.where(0).capitalize()} has {batch.labels.shape[1]} label values; "
                        "factorization machines take one.")
    labels = np.ascontiguousarray(batch.labels[:, 0], np.float32)
    bad = ~np.isfinite(labels) if not classifier else ~((labels == 0) | (labels == 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        need = "binary_classifier needs labels 0 or 1" if classifier else "labels must be finite numbers"
        raise UserError(f"{batch.where(row).capitalize()} has label {float(labels[row])!r}; {need}.")
    return Rows(*csr_parts(batch.features), labels)


def channel_rows(channel: DataChannel, hp: FMHyperparameters, epoch: int) -> Iterator[Rows]:
    block = max(hp.mini_batch_size, BLOCK_ROWS // hp.mini_batch_size * hp.mini_batch_size)
    for batch in channel.batches(block, epoch, hp.feature_dim, exact=False):
        yield labelled_rows(batch, hp.is_classifier)


def initial_state(hp: FMHyperparameters) -> dict[str, np.ndarray]:
    _check_fits(hp)
    rng = np.random.default_rng(SEED)
    d, k = hp.feature_dim, hp.num_factors
    params = {name: _init(hp, group, shape, rng)
              for name, group, shape in (("w0", "bias", (1,)), ("w", "linear", (d,)), ("v", "factors", (d, k)))}
    moments = {moment + suffix: np.zeros_like(params["w0" if suffix == "0" else suffix])
               for suffix in ("0", "w", "v") for moment in ("m", "s")}
    return {**params, **moments}


def _check_fits(hp: FMHyperparameters) -> None:
    """Refuse before allocating: feature_dim x (num_factors + 1) weights, each with its Adam moments."""
    needed = STATE_BYTES_PER_WEIGHT * hp.feature_dim * (hp.num_factors + 1)
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if needed > physical:
        raise UserError(f"feature_dim={hp.feature_dim} with num_factors={hp.num_factors} needs about "
                        f"{needed / 2**30:.1f} GiB for the model and its optimiser state, more than this machine's "
                        f"{physical / 2**30:.1f} GiB; lower num_factors, or feature_dim to the data's width")


def _init(hp: FMHyperparameters, group: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    method = getattr(hp, f"{group}_init_method")
    if method == "normal":
        values = rng.normal(0.0, getattr(hp, f"{group}_init_sigma"), shape)
    elif method == "uniform":
        scale = getattr(hp, f"{group}_init_scale")
        values = rng.uniform(-scale, scale, shape)
    else:
        values = np.full(shape, getattr(hp, f"{group}_init_value"))
    return values.astype(np.float32)


def settings(hp: FMHyperparameters) -> np.ndarray:
    out = np.zeros(kernels.N_SETTINGS)
    out[[kernels.LR0, kernels.LRW, kernels.LRV]] = hp.bias_lr, hp.linear_lr, hp.factors_lr
    out[[kernels.WD0, kernels.WDW, kernels.WDV]] = hp.bias_wd, hp.linear_wd, hp.factors_wd
    out[kernels.EPS] = hp.adam_eps
    out[kernels.CLIP] = hp.clip_gradient or 0.0
    out[kernels.RESCALE] = hp.rescale_grad or 0.0
    return out


class Trainer:
    """Adam over mini-batches with the scratch space the kernel needs."""

    def __init__(self, hp: FMHyperparameters, state: dict[str, np.ndarray], step: int = 0) -> None:
        self.hp, self.state = hp, state
        self.settings = settings(hp)
        self.step = np.array([step], np.int64)
        self.slot = np.full(hp.feature_dim, -1, np.int64)
        self.features = np.zeros(0, np.int64)
        self.gw, self.gv = np.zeros(0), np.zeros((0, hp.num_factors))

    def train(self, rows: Rows, lo: int = 0, hi: int | None = None) -> float:
        """Adam steps over the mini-batches of rows lo..hi; the sum of the rows' losses (squared error or log loss)."""
        hi = len(rows) if hi is None else hi
        indptr, labels = rows.indptr[lo:hi + 1], rows.labels[lo:hi]
        n, b = hi - lo, self.hp.mini_batch_size
        starts = indptr[np.arange(0, n, b)]
        needed = int(np.max(indptr[np.minimum(np.arange(0, n, b) + b, n)] - starts)) if n else 0
        needed = min(needed, self.hp.feature_dim)
        if needed > self.gw.size:
            self.features = np.zeros(needed, np.int64)
            self.gw, self.gv = np.zeros(needed), np.zeros((needed, self.hp.num_factors))
        s = self.state
        return kernels.train_rows(indptr, rows.indices, rows.data, labels, b, self.hp.is_classifier,
                                  s["w0"], s["w"], s["v"], s["m0"], s["s0"], s["mw"], s["sw"], s["mv"], s["sv"],
                                  self.settings, self.step, self.gw, self.gv, self.slot, self.features)


def fit(hp: FMHyperparameters, job: TrainingJob) -> tuple[dict[str, np.ndarray], int]:
    """Train over `epochs`; every host returns the same combined state, and the rows it read."""
    train = job.channels["train"]
    collective = job.collective
    state, start_epoch, step = initial_state(hp), 0, 0
    shape = [hp.feature_dim, hp.num_factors, hp.epochs]
    resumed = job.checkpoints.latest(shape)
    if resumed:
        state, start_epoch, step = resumed[0], int(resumed[1]["epoch"]) + 1, int(resumed[1]["step"])
        log.info("Resuming from the checkpoint after epoch %d.", start_epoch - 1)
    trainer = Trainer(hp, state, step)
    sync = HostSync(collective, state) if collective.world_size > 1 else None
    round_rows = round_steps(hp.feature_dim, hp.num_factors) * hp.mini_batch_size
    cache: list[Rows] | None = [] if train.config.input_mode != PIPE else None
    cache_limit = CACHE_FRACTION * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    rows_read, cached_bytes, started = 0, 0, time.perf_counter()
    epochs, rows_per_epoch = Progress("training", hp.epochs, "epochs", start=start_epoch), None
    for epoch in range(start_epoch, hp.epochs):
        cached = cache is not None and epoch > start_epoch
        blocks = iter(cache) if cached else channel_rows(train, hp, epoch - start_epoch)
        rows, loss = 0, 0.0
        epoch_rows = Progress(f"epoch {epoch + 1}/{hp.epochs}", rows_per_epoch)
        for block in blocks:
            if sync is None:
                loss += trainer.train(block)
            else:
                for lo, hi in chunks(block.indptr, round_rows):
                    loss += trainer.train(block, lo, hi)
                    sync.combine(True)
            rows += len(block)
            epoch_rows.advance(len(block))
            if cache is not None and not cached:
                cache.append(block)
                cached_bytes += block.nbytes
                if cached_bytes > cache_limit:
                    log.info("The training data is larger than the in-memory cache; reading it every epoch.")
                    cache = None
        rows_read += rows
        totals = np.array([rows, loss])
        if sync is not None:
            sync.finish()
            totals = collective.allreduce_sum(totals)
        if totals[0] == 0:
            raise UserError("The train channel holds no data rows.")
        epoch_rows.finish()
        rows_per_epoch = rows
        if job.cluster.is_leader:
            _emit_train(job, hp, epoch, totals)
        job.checkpoints.save(epoch, state, {"epoch": epoch, "step": int(trainer.step[0]), "state": shape},
                             progress=f"epoch {epoch + 1} of {hp.epochs}")
        job.metrics.progress(100.0 * (epoch + 1) / hp.epochs)
        epochs.advance()
    job.metrics.throughput(rows_read / max(time.perf_counter() - started, 1e-9))
    return state, rows_read


def _emit_train(job: TrainingJob, hp: FMHyperparameters, epoch: int, totals: np.ndarray) -> None:
    rows, loss = float(totals[0]), float(totals[1])
    if hp.is_classifier:
        job.emit("train:binary_classification_cross_entropy", loss / rows, epoch=epoch)
    else:
        job.emit("train:rmse", float(np.sqrt(loss / rows)), epoch=epoch)
