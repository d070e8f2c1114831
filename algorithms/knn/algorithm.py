"""The k-NN image: sampling, index build, artifact, inference (docs/images/knn.md).

Training: every host reservoir-samples its share of `sample_size` from its train channel in one
pass; the samples go to the first host (`job.collective.gather`), which projects them (optional
`sign`/`fjlt` reduction), pads them for PQ or normalises them for COSINE, builds the FAISS index
and writes the model. With a FullyReplicated channel on several hosts, host r samples only rows
r, r+N, r+2N, ... so no row is drawn twice.

Responses: `predicted_label`; with `verbose=true` in Accept also `distances` and `labels` (k each,
best neighbour first: squared L2 for L2, similarity for INNER_PRODUCT/COSINE, as FAISS returns
them). Beyond the AWS image, `neighbor_ids=true` in Accept adds `neighbor_ids`: the training row
number of each neighbour (0-based, files in sorted order; with several ShardedByS3Key hosts, algo-2's
rows are numbered after algo-1's), e.g. `Accept: application/json; verbose=true; neighbor_ids=true`.

Serving a large index without a copy per worker: the index is opened with
`faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY`, which memory-maps the vectors of a Flat index
and the inverted lists of IVFFlat/IVFPQ (the codes) from `/opt/ml/model`, and the labels and row ids
are `np.memmap`s. Every gunicorn worker maps the same file pages, so the machine holds one copy in
its page cache whatever SAGEMAKER_MODEL_SERVER_WORKERS is; a worker's private memory is only the
IVF centroids and PQ tables. Measured with a 100 MB Flat index: RssAnon 20 MB per worker with the
flag, 118 MB without. The alternative, one worker whose FAISS threads use every core, would also
hold one copy but serialises the Python part of concurrent requests in one process; with mmap the
default layout (one worker per core, one FAISS/OpenMP thread each, set by common.serving.gunicorn) keeps both
the memory and the parallelism. For one huge batch request at a time, `SAGEMAKER_MODEL_SERVER_WORKERS=1`
gives that request every core through FAISS's OpenMP threads, still with one mapped copy.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from algorithms.knn import artifact, index
from algorithms.knn.artifact import ModelMeta
from algorithms.knn.hyperparameters import COSINE, IVFPQ, KnnHyperparameters
from algorithms.knn.reduction import SEED, Reduction, Transform
from algorithms.knn.training import gather_samples, score_test
from common.algorithm import Algorithm, TrainingJob
from common.channels import ChannelSpec
from common.data.batch import Batch
from common.data.columns import Columns
from common.errors import UserError
from common.imports import LazyModule
from common.metrics import MetricDefinition
from common.serving.request import Options

vote = LazyModule("algorithms.knn.vote")  # numba: loaded by the first call

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)


class Knn(Algorithm[KnnHyperparameters]):
    name = "knn"
    Hyperparameters = KnnHyperparameters
    channels = (
        ChannelSpec("train", required=True, csv_label_size=1),
        ChannelSpec("test", csv_label_size=1),
    )
    # Published in the #quality_metric form; the #test_score form is printed too (see training.py).
    metrics = (
        MetricDefinition("test:accuracy", maximize=True, tunable=True),
        MetricDefinition("test:mse", tunable=True),
    )
    metrics_note = ("no train metric is printed. test:accuracy (classifier) or test:mse (regressor) compares the "
                    "test channel's labels with what the built index predicts for its rows (the most common, or "
                    "the mean, label of their k nearest sampled training rows), measured once after the index is "
                    "built.")

    def __init__(self, faiss_index: faiss.Index, labels: np.ndarray, row_ids: np.ndarray, meta: ModelMeta) -> None:
        self.index = faiss_index
        self.labels = labels
        self.row_ids = row_ids
        self.meta = meta
        self.transform = meta.transform()
        self.k = min(meta.k, int(faiss_index.ntotal))

    @property
    def feature_dim(self) -> int:
        return self.meta.feature_dim

    # ---- training -------------------------------------------------------------------------
    @classmethod
    def train(cls, job: TrainingJob[KnnHyperparameters]) -> Knn | None:
        hp = job.hyperparameters
        sample = gather_samples(job, hp)
        model = None
        if sample is not None:
            started = time.perf_counter()
            model = cls.fit(*sample, hp)
            log.info("Built the %s index of %d vectors (dimension %d) in %.2f s.", model.meta.index["factory"],
                     model.index.ntotal, model.index.d, time.perf_counter() - started)
        score_test(cls, model, hp, job)
        return model

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, row_ids: np.ndarray, hp: KnnHyperparameters) -> Knn:
        """The model of sampled rows: transform, plan and build the index."""
        reduction, padded_dim = None, None
        target = hp.reduction_target
        if hp.index_type == IVFPQ:
            _, dim = index.pq_dimension(hp)
            if target is not None:
                target = dim
            elif dim != hp.feature_dim:
                padded_dim = dim
        if target is not None and hp.dimension_reduction_type:
            reduction = Reduction(hp.dimension_reduction_type, SEED, target, hp.feature_dim)
        transform = Transform(hp.feature_dim, reduction, padded_dim, normalize=hp.index_metric == COSINE)
        vectors = transform(features)
        plan = index.plan_index(hp, transform.output_dim, len(vectors))
        built = index.build(vectors, plan)
        meta = ModelMeta(hp.k, hp.predictor_type, hp.feature_dim, reduction, transform.normalize, padded_dim,
                         plan.nprobe, plan.to_json(), {"sample_size": hp.sample_size, "sampled": len(vectors)})
        return cls(built, np.asarray(labels, np.float32), np.asarray(row_ids, np.int64), meta)

    # ---- artifact ---------------------------------------------------------------------------
    def save(self, model_dir: Path) -> None:
        index.write(self.index, model_dir / artifact.MODEL_FILE)
        artifact.write_arrays(model_dir, self.labels, self.row_ids)
        artifact.write_meta(self.meta, model_dir / artifact.META_FILE)

    @classmethod
    def load(cls, model_dir: Path) -> Knn:
        path = model_dir / artifact.MODEL_FILE
        if not path.is_file():
            raise UserError(f"{artifact.MODEL_FILE} is missing from the model directory {model_dir}.")
        faiss_index = index.read(path)
        meta = artifact.read_meta(model_dir / artifact.META_FILE, int(faiss_index.d))
        _check_dimensions(meta, int(faiss_index.d))
        if meta.nprobe is None:
            meta.nprobe = index.plan_nprobe(faiss_index)
        labels, row_ids = artifact.read_arrays(model_dir, int(faiss_index.ntotal))
        if meta.k > faiss_index.ntotal:
            log.warning("k=%d in %s is more than the %d indexed points; answering with %d neighbours.",
                        meta.k, artifact.META_FILE, faiss_index.ntotal, faiss_index.ntotal)
        log.info("k=%d, predictor_type=%s, index %s of %d vectors.", meta.k, meta.predictor_type,
                 type(faiss_index).__name__, faiss_index.ntotal)
        return cls(faiss_index, labels, row_ids, meta)

    def export(self) -> dict[str, np.ndarray]:
        arrays = {"labels": np.asarray(self.labels), "row_ids": np.asarray(self.row_ids)}
        vectors = index.stored_vectors(self.index)
        if vectors is not None:
            arrays["vectors"] = vectors
        return arrays

    # ---- inference --------------------------------------------------------------------------
    def warm_up(self) -> None:
        vote.warm_up()
        self.predict(Batch(np.zeros((1, self.feature_dim), np.float32)), Options(verbose=True))

    @classmethod
    def warm_up_kernels(cls) -> None:
        vote.warm_up()  # the classifier's vote, in training's test scoring and in serving

    def neighbors(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances and index ids (n, k) of the nearest stored points, best first."""
        return index.search(self.index, self.transform(x), self.k, self.meta.nprobe)

    def predict_labels(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Predicted labels (n,), neighbour labels, distances and index ids (n, k each)."""
        distances, ids = self.neighbors(x)
        labels = vote.as_written(np.asarray(self.labels)[ids] if ids.size else np.empty(ids.shape, np.float32))
        if self.meta.predictor_type == "classifier":
            predicted = vote.majority_vote(labels)
        else:
            predicted = vote.mean_label(labels)
        return predicted, labels, distances, ids

    def predict(self, batch: Batch, options: Options) -> Columns:
        batch.check_width(self.feature_dim, "the model's feature_dim")
        predicted, labels, distances, ids = self.predict_labels(batch.dense())
        columns: Columns = {"predicted_label": predicted}
        if options.verbose:
            columns["distances"] = distances
            columns["labels"] = labels
        if options.neighbor_ids:
            columns["neighbor_ids"] = np.asarray(self.row_ids)[ids].astype(np.float64)
        return columns


def _check_dimensions(meta: ModelMeta, index_dim: int) -> None:
    expected = meta.transform().output_dim
    if expected != index_dim:
        raise UserError(f"{artifact.META_FILE} describes vectors of dimension {expected} but {artifact.MODEL_FILE} "
                        f"indexes dimension {index_dim}.")
