"""The k-means image: training loop, artifact, inference (docs/images/kmeans.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from algorithms.kmeans.hyperparameters import KMeansHyperparameters
from algorithms.kmeans.reduction import reduce_centers
from algorithms.kmeans.refinement import Refinement
from algorithms.kmeans.sample import sample_capacity
from common.algorithm import Algorithm, TrainingJob
from common.channels import ChannelSpec, DataChannel
from common.data.batch import Batch
from common.data.columns import Columns
from common.data.ndarray_file import load_ndarrays, save_ndarrays
from common.errors import UserError
from common.imports import LazyModule
from common.metrics import MetricDefinition
from common.progress import Progress
from common.serving.request import Options

kernels = LazyModule("algorithms.kmeans.kernels")  # numba: loaded by the first call

log = logging.getLogger(__name__)
MODEL_FILE = "model_algo-1"
SEED = 0
SMALL_REQUEST = 4096  # rows x centres below which direct loops beat the BLAS route


class KMeans(Algorithm[KMeansHyperparameters]):
    name = "kmeans"
    Hyperparameters = KMeansHyperparameters
    channels = (
        ChannelSpec("train", required=True, csv_label_size=None),
        ChannelSpec("test", csv_label_size=None),
    )
    metrics = (
        MetricDefinition("test:msd", tunable=True),
        MetricDefinition("test:ssd", tunable=True),
        MetricDefinition("train:msd"),
    )
    metrics_note = ("train:msd is the mean squared distance from training rows to their nearest final centre, measured "
                    "on a uniform sample of the training rows drawn during the first epoch (every row when there are "
                    "few), for the centres kept: the best of the epochs on that sample. With half_life_time_size set "
                    "no sample is kept, and train:msd, printed only when the k x extra_center_factor mini-batch "
                    "centres are reduced to k, is the weighted mean squared distance from those centres (each weighted "
                    "by the rows it absorbed) to the final k, not measured on rows. test:msd and test:ssd are the mean "
                    "and the sum of the squared distances from each row of the test channel to its nearest final "
                    "centre, measured once after training.")

    def __init__(self, centers: np.ndarray) -> None:
        self.centers = np.ascontiguousarray(centers, dtype=np.float32)
        self.center_norms = np.einsum("ij,ij->i", self.centers, self.centers)

    @property
    def feature_dim(self) -> int:
        return int(self.centers.shape[1])

    # ---- training -------------------------------------------------------------------------
    @classmethod
    def train(cls, job: TrainingJob[KMeansHyperparameters]) -> KMeans | None:
        hp = job.hyperparameters
        train = job.channels["train"]
        started = time.perf_counter()
        centers, counts, rows_seen, refinement = _fit_minibatch(hp, train, job)
        elapsed = time.perf_counter() - started
        job.metrics.throughput(rows_seen / max(elapsed, 1e-9))
        if not job.cluster.is_leader:
            _score_test(None, hp, job)
            return None
        if refinement.best is not None:
            final = refinement.best
            job.emit("train:msd", refinement.best_msd)
        elif len(centers) > hp.k:
            log.info("shrinking %d centers into %d", len(centers), hp.k)
            final, train_msd = reduce_centers(centers, counts, hp, np.random.default_rng(SEED))
            job.emit("train:msd", train_msd)
        else:
            final = centers
        model = cls(final)
        _score_test(model, hp, job)
        return model

    # ---- artifact ---------------------------------------------------------------------------
    def save(self, model_dir: Path) -> None:
        save_ndarrays(model_dir / MODEL_FILE, [self.centers])

    @classmethod
    def load(cls, model_dir: Path) -> KMeans:
        path = model_dir / MODEL_FILE
        if not path.is_file():
            raise UserError(f"{MODEL_FILE} is missing from the model directory {model_dir}.")
        arrays = load_ndarrays(path)
        first = next(iter(arrays.values())) if isinstance(arrays, dict) else (arrays[0] if arrays else None)
        if first is None or first.ndim != 2 or first.shape[0] < 1:
            raise UserError(f"{MODEL_FILE} must hold one (k, feature_dim) array of centroids.")
        return cls(first)

    def export(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centers}

    # ---- inference --------------------------------------------------------------------------
    def warm_up(self) -> None:
        self.predict(Batch(np.zeros((1, self.feature_dim), np.float32)), Options())
        kernels.assign(np.zeros((1, self.feature_dim), np.float32), self.centers, self.center_norms)

    @classmethod
    def warm_up_kernels(cls) -> None:
        x = np.zeros((2, 2), np.float32)
        labels, _ = kernels.assign(x, x)
        kernels.minibatch_update(x, labels, x.astype(np.float64), np.zeros(2), 1.0)
        kernels.nearest_small(x, x)
        for points in (x, x.astype(np.float64)):  # Lloyd over the float32 sample and over the float64 centres
            kernels.weighted_lloyd(points, np.ones(len(points)), points.astype(np.float64), 1, 0.0)

    def predict(self, batch: Batch, options: Options) -> Columns:
        batch.check_width(self.feature_dim, "the model's feature_dim")
        x = batch.dense()
        if len(x) * len(self.centers) <= SMALL_REQUEST:
            labels, distances = kernels.nearest_small(x, self.centers)
            return {"closest_cluster": labels, "distance_to_cluster": distances}
        labels, squared = kernels.assign(x, self.centers, self.center_norms)
        return {
            "closest_cluster": labels.astype(np.float32),
            "distance_to_cluster": np.sqrt(squared).astype(np.float32),
        }


def _fit_minibatch(hp: KMeansHyperparameters, train: DataChannel, job: TrainingJob[KMeansHyperparameters]
                   ) -> tuple[np.ndarray, np.ndarray, int, Refinement]:
    """Mini-batch passes over the local shard, synchronised across hosts after every epoch."""
    collective = job.collective
    rng = np.random.default_rng(SEED)
    wanted = hp.k * hp.center_factor
    decay_per_row = 0.5 ** (1.0 / hp.half_life_time_size) if hp.half_life_time_size else 1.0
    state = [wanted, hp.feature_dim, hp.epochs, sample_capacity(hp.feature_dim)]
    resumed = job.checkpoints.latest(state)
    start_epoch = 0
    if resumed:
        centers, counts = resumed[0]["centers"], resumed[0]["counts"]
        start_epoch = int(resumed[1]["epoch"]) + 1
        log.info("Resuming from the checkpoint after epoch %d.", start_epoch - 1)
    refinement = Refinement(hp, collective, SEED, resumed[0] if resumed else None)
    rows_seen = 0
    epochs, rows_per_epoch = Progress("training", hp.epochs, "epochs", start=start_epoch), None
    for epoch in range(start_epoch, hp.epochs):
        rows = Progress(f"epoch {epoch + 1}/{hp.epochs}", rows_per_epoch)
        # Pipe mode numbers FIFOs from 0 in every run, so a resumed job reads pass 0 first.
        batches = _dense_batches(train, hp, epoch - start_epoch)
        if epoch == start_epoch and not resumed:
            pool, batches = _initial_pool(batches, wanted)
            centers = _initial_centers(pool, hp, wanted, rng, job)
            counts = np.zeros(len(centers))
            refinement.collect()
        synced_centers, base = centers.copy(), counts.copy()
        for x in batches:
            centers32 = centers.astype(np.float32)
            labels, _ = kernels.assign(x, centers32)
            decay = decay_per_row ** len(x)
            kernels.minibatch_update(x, labels, centers, counts, decay)
            refinement.offer(x)
            base *= decay
            rows_seen += len(x)
            rows.advance(len(x))
        if collective.world_size > 1:
            centers, counts = _combine_hosts(collective, synced_centers, base, centers, counts)
        rows.finish()
        rows_per_epoch = rows.done
        refinement.end_epoch(centers, counts, epoch)
        job.checkpoints.save(epoch, {"centers": centers, "counts": counts, **refinement.arrays()},
                             {"epoch": epoch, "state": state}, progress=f"epoch {epoch + 1} of {hp.epochs}")
        job.metrics.progress(100.0 * (epoch + 1) / hp.epochs)
        epochs.advance()
    return centers, counts, rows_seen, refinement


def _dense_batches(train: DataChannel, hp: KMeansHyperparameters, epoch: int) -> Iterator[np.ndarray]:
    for batch in train.batches(hp.mini_batch_size, epoch, hp.feature_dim):
        yield batch.dense()


def _initial_pool(batches: Iterator[np.ndarray], wanted: int) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """Read batches until `wanted` rows are at hand; they are still used for training afterwards."""
    pool: list[np.ndarray] = []
    rows = 0
    for x in batches:
        pool.append(x)
        rows += len(x)
        if rows >= wanted:
            break

    def replay() -> Iterator[np.ndarray]:
        yield from pool
        yield from batches

    return (np.concatenate(pool) if pool else np.empty((0, 0), np.float32)), replay()


def _initial_centers(pool: np.ndarray, hp: KMeansHyperparameters, wanted: int,
                     rng: np.random.Generator, job: TrainingJob[KMeansHyperparameters]) -> np.ndarray:
    collective = job.collective
    pools = collective.allgather(pool) if collective.world_size > 1 else [pool]
    candidates = np.concatenate([p for p in pools if len(p)]) if any(len(p) for p in pools) else pool
    if len(candidates) == 0:
        raise UserError("The train channel holds no data rows.")
    if len(candidates) < hp.k:
        raise UserError(f"k={hp.k} is larger than the number of training rows ({len(candidates)}).")
    count = min(wanted, len(candidates))
    if count < wanted:
        log.warning("Only %d rows are available to initialise %d centers; using %d centers.",
                    len(candidates), wanted, count)
    if job.cluster.is_leader or collective.world_size == 1:
        if hp.init_method == "kmeans++":
            chosen = kernels.kmeans_plus_plus(candidates.astype(np.float64), np.ones(len(candidates)), count, rng)
        else:
            chosen = kernels.random_init(candidates.astype(np.float64), count, rng)
    else:
        chosen = None
    if collective.world_size > 1:
        chosen = collective.broadcast(chosen, root=0)
    return np.asarray(chosen, dtype=np.float64)


def _combine_hosts(collective, synced: np.ndarray, base: np.ndarray, centers: np.ndarray,
                   counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge every host's epoch into one state: the synced centres plus each host's new mass."""
    new_mass = counts - base
    moved = centers * counts[:, None] - synced * base[:, None]
    total_mass = collective.allreduce_sum(new_mass)
    total_moved = collective.allreduce_sum(moved)
    mean_base = collective.allreduce_sum(base) / collective.world_size
    merged_counts = mean_base + total_mass
    merged = synced.copy()
    filled = merged_counts > 0
    merged[filled] = (synced[filled] * mean_base[filled, None] + total_moved[filled]) / merged_counts[filled, None]
    return merged, merged_counts


def _score_test(model: KMeans | None, hp: KMeansHyperparameters, job: TrainingJob[KMeansHyperparameters]) -> None:
    """test:msd / test:ssd on the final centres; sharded test data is summed over hosts."""
    test, sharded = job.test_channel()
    if test is None:
        return
    if sharded:
        centers = job.collective.broadcast(model.centers if model else None, root=0)
        model = KMeans(centers)
    ssd, rows = 0.0, 0
    for batch in test.batches(hp.mini_batch_size, 0, hp.feature_dim):
        _, squared = kernels.assign(batch.dense(), model.centers, model.center_norms)
        ssd += float(squared.sum())
        rows += len(batch)
    if sharded:
        ssd, rows = job.collective.allreduce_sum(np.array([ssd, float(rows)])).tolist()
    if not job.cluster.is_leader:
        return
    if rows == 0:
        raise UserError("The test channel holds no data rows.")
    for metric in hp.eval_metrics:
        job.emit(f"test:{metric}", ssd / rows if metric == "msd" else ssd)
