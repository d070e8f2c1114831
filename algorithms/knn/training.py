"""The steps around the index build: each host's sample, gathering it on the leader, the test score."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from algorithms.knn import index
from algorithms.knn.artifact import meta_from_dict
from algorithms.knn.hyperparameters import KnnHyperparameters
from algorithms.knn.sampling import Reservoir, host_share
from common import stopping
from common.algorithm import TrainingJob
from common.channels import SHARDED, DataChannel
from common.checkpoints import Checkpoints, job_state
from common.data import content_types as ct
from common.data.batch import Batch
from common.errors import UserError
from common.imports import LazyModule
from common.metrics import MetricDefinition
from common.progress import Progress

vote = LazyModule("algorithms.knn.vote")

log = logging.getLogger(__name__)

SAMPLING_SEED = 0
# The form AWS's guide documents (docs/images/knn.md, "Metrics"); the #quality_metric form is the published definition.
TEST_SCORE_LINES = {
    "accuracy": MetricDefinition("test:accuracy", maximize=True, style="test_score"),
    "mse": MetricDefinition("test:mse", style="test_score"),
}

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]


def check_labelled(channel: DataChannel) -> None:
    """k-NN needs exactly one label column; refuse a CSV label_size that says otherwise before reading."""
    media = channel.config.media
    size = media.params.get("label_size")
    if media.name == ct.CSV and size is not None and size != "1":
        raise UserError(f"Channel '{channel.name}' has ContentType '{media.name};label_size={size}', but k-NN "
                        f"needs exactly one label column per row: use label_size=1.")


def labels_of(batch: Batch) -> np.ndarray:
    """The batch's labels as a float32 vector; every row needs exactly one finite label."""
    if batch.labels is None:
        raise UserError(f"{batch.where(0).capitalize()} has no label; k-NN needs a label on every row "
                        "(label_size=1 for CSV, label[\"values\"] for recordIO-protobuf).")
    if batch.labels.shape[1] != 1:
        raise UserError(f"{batch.where(0).capitalize()} has {batch.labels.shape[1]} label values; k-NN takes "
                        "exactly one label per row.")
    labels = np.asarray(batch.labels[:, 0], dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(labels))
    if bad.size:
        raise UserError(f"{batch.where(int(bad[0])).capitalize()} has a NaN or infinite label.")
    return labels


def sample_host(channel: DataChannel, hp: KnnHyperparameters, rank: int, world_size: int,
                checkpoints: Checkpoints | None = None) -> tuple[Sample, int]:
    """This host's share of the sample in one pass, and the number of rows it read.

    On several hosts reading the same (FullyReplicated) data, host r only draws from rows r, r+N, ...
    The reservoir is checkpointed when `checkpoints.due()` (a minute on, or SIGTERM) and at the end of the pass;
    a restarted job skips the batches it holds (or the whole pass).
    """
    check_labelled(channel)
    stride = world_size if channel.config.distribution != SHARDED else 1
    capacity = host_share(hp.sample_size, rank, world_size)
    reservoir, rows = Reservoir(capacity, SAMPLING_SEED + rank), 0
    state = job_state(hp, rank, world_size)
    resumed = checkpoints.latest(state) if checkpoints is not None else None
    if resumed is not None:
        arrays, meta = resumed
        reservoir, rows = Reservoir.restore(capacity, arrays, meta["reservoir"]), int(meta["rows"])
        log.info("Resuming from the checkpoint after %d rows%s.", rows, " (the whole pass)" if meta["complete"] else "")
        if meta["complete"]:
            return reservoir.result(hp.feature_dim), rows

    def save(complete: bool) -> None:
        if checkpoints is not None:
            checkpoints.save(rows, reservoir.arrays(hp.feature_dim),
                             {"rows": rows, "complete": complete, "reservoir": reservoir.counters(), "state": state},
                             progress=f"sampling {rows} rows" + (", the whole train channel" if complete else ""))

    position, progress = 0, Progress("sampling the train channel", start=rows)
    with stopping.deferred():  # SIGTERM: checkpoint after the batch, then stop
        for batch in channel.batches(hp.mini_batch_size, 0, hp.feature_dim):
            position += len(batch)
            if position <= rows:
                continue  # in the checkpoint's reservoir already
            labels = labels_of(batch)
            row_ids = np.arange(rows, rows + len(batch), dtype=np.int64)
            rows += len(batch)
            progress.advance(len(batch))
            if stride > 1:
                mine = np.flatnonzero(row_ids % stride == rank)
                batch = Batch(batch.features[mine], None, batch.first_row, batch.source)
                labels, row_ids = labels[mine], row_ids[mine]
            if len(batch):
                reservoir.add(batch, labels, row_ids)
            if checkpoints is not None and checkpoints.due():
                save(complete=False)
            stopping.check()
    progress.finish()
    save(complete=True)
    return reservoir.result(hp.feature_dim), rows


def gather_samples(job: TrainingJob, hp: KnnHyperparameters) -> Sample | None:
    """Every host samples; the leader gets all samples (features, labels, row ids), the others None."""
    collective, cluster = job.collective, job.cluster
    started = time.perf_counter()
    train = job.channels["train"]
    (features, labels, row_ids), rows = sample_host(train, hp, cluster.rank, cluster.world_size, job.checkpoints)
    job.metrics.throughput(rows / max(time.perf_counter() - started, 1e-9))
    job.metrics.progress(100.0)
    counts = collective.allgather((len(labels), rows))
    sharded = train.config.distribution == SHARDED
    total_rows = sum(r for _, r in counts) if sharded else rows
    sampled = sum(n for n, _ in counts)
    if total_rows == 0:
        raise UserError("The train channel holds no data rows.")
    if sampled < hp.k:
        raise UserError(f"k={hp.k} is larger than the number of training rows ({sampled}).")
    if sharded:
        row_ids = row_ids + sum(r for _, r in counts[: cluster.rank])
    parts = collective.gather((features, labels, row_ids), root=0)
    if parts is None:
        return None
    if sampled < hp.sample_size:
        log.warning("The train channel holds %d rows, fewer than sample_size=%d; all of them are indexed.",
                    sampled, hp.sample_size)
    log.info("Sampled %d of %d rows on %d host(s).", sampled, total_rows, cluster.world_size)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def score_test(cls: Any, model: Any, hp: KnnHyperparameters, job: TrainingJob) -> None:
    """test:accuracy (classifier) or test:mse (regressor); sharded test data is scored on every host."""
    test, sharded = job.test_channel()
    if test is None:
        return
    if sharded:
        payload = (index.to_bytes(model.index), model.labels, model.row_ids, model.meta.to_json()) if model else None
        data, labels, row_ids, meta = job.collective.broadcast(payload, root=0)
        faiss_index = index.from_bytes(data)
        model = cls(faiss_index, labels, row_ids, meta_from_dict(meta, int(faiss_index.d)))
    check_labelled(test)
    hits, squared, rows = 0.0, 0.0, 0
    for batch in test.batches(hp.mini_batch_size, 0, hp.feature_dim):
        truth = vote.as_written(labels_of(batch))
        predicted = model.predict_labels(batch.dense())[0]
        hits += float(np.count_nonzero(predicted.astype(np.float32) == truth.astype(np.float32)))
        squared += float(((predicted - truth) ** 2).sum())
        rows += len(batch)
    if sharded:
        hits, squared, rows = job.collective.allreduce_sum(np.array([hits, squared, float(rows)])).tolist()
    if not job.cluster.is_leader:
        return
    if rows == 0:
        raise UserError("The test channel holds no data rows.")
    name, value = ("accuracy", hits / rows) if hp.predictor_type == "classifier" else ("mse", squared / rows)
    job.metrics.emit(TEST_SCORE_LINES[name], value)
    job.emit(f"test:{name}", value)  # the objective's line, printed last
