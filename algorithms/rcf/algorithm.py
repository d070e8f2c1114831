"""The Random Cut Forest image: training, artifact, inference (docs/images/rcf.md).

Training reads the train channel once into per-host reservoirs (sampling.py), every host builds its
share of the trees (tree t on host t mod hosts) from the pooled sample, and the leader gathers them
into one forest, scores the labelled test channel and writes `model_algo-1` (format in forest.py).

Inference answers `{"scores": [{"score": s}, ...]}`; with `;verbose=true` on the Accept type each row
also gets `attribution` (per feature, summing to the score), `attribution_high` and `attribution_low`
(the parts from values above and below the forest's boxes, as random-cut-forest-by-aws's DiVector).
Scores and attributions are rounded to 10 decimals (the real image's JSON shows 10; docs/images/rcf.md, "Responses").
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from algorithms.rcf.evaluation import QUALITY, TEST_SCORE, check_labels, three_sigma_metrics
from algorithms.rcf.forest import Forest, Trees
from algorithms.rcf.hyperparameters import RCFHyperparameters
from algorithms.rcf.sampling import Reservoir, sample_stream
from common.algorithm import Algorithm, TrainingJob
from common.channels import FILE, PIPE, REPLICATED, SHARDED, ChannelSpec
from common.checkpoints import job_state
from common.data import content_types as ct
from common.data.batch import Batch
from common.data.columns import Columns, ResponseLayout
from common.errors import UserError
from common.progress import Progress
from common.serving.request import Options

log = logging.getLogger(__name__)
MODEL_FILE = "model_algo-1"
SEED = 0
DECIMALS = 10


class RandomCutForest(Algorithm[RCFHyperparameters]):
    name = "rcf"
    Hyperparameters = RCFHyperparameters
    channels = (
        # ShardedByS3Key is required once there are several hosts (checked in `train`): a replicated
        # channel would put every row into the forest once per host. One host reads all rows either way.
        ChannelSpec("train", required=True, input_modes=(FILE, PIPE), distributions=(SHARDED, REPLICATED),
                    csv_label_size=0),
        ChannelSpec("test", input_modes=(FILE, PIPE), distributions=(REPLICATED,), csv_label_size=1),
    )
    metrics = tuple(QUALITY.values())
    metrics_note = ("no train metric is printed. The test:* metrics compare the test channel's labels (1 = anomaly) "
                    "with the built forest's flags, a row being flagged when its score is above the mean + 3 standard "
                    "deviations of the test channel's scores; measured once after the forest is built.")
    response_types = (ct.JSON, ct.JSONLINES, ct.RECORDIO, ct.CSV)
    response_layout = ResponseLayout(envelope="scores")

    def __init__(self, forest: Forest) -> None:
        self.forest = forest

    @property
    def feature_dim(self) -> int:
        return self.forest.feature_dim

    # ---- training -------------------------------------------------------------------------
    @classmethod
    def train(cls, job: TrainingJob[RCFHyperparameters]) -> RandomCutForest | None:
        hp = job.hyperparameters
        train = job.channels["train"]
        collective = job.collective
        if train.config.distribution != SHARDED:
            if collective.world_size > 1:
                raise UserError(f"The train channel must be ShardedByS3Key when training on {collective.world_size} "
                                f"hosts; it is {train.config.distribution}.")
            log.warning("The train channel is %s; SageMaker RCF expects ShardedByS3Key (the same on one host).",
                        train.config.distribution)
        if hp.epochs > 1:
            log.info("epochs=%d: RCF samples its data in one pass; the other epochs are not read.", hp.epochs)
        log.info("Validating that feature_dim agrees with dimensions in training data...")
        started = time.perf_counter()
        batches = (b.dense() for b in train.batches(hp.mini_batch_size, 0, hp.feature_dim, exact=False))
        samples = sample_stream(batches, hp.num_trees, hp.num_samples_per_tree, hp.feature_dim, collective, SEED,
                                job.checkpoints, job_state(hp, collective.rank, collective.world_size))
        job.metrics.throughput(samples.rows_here / max(time.perf_counter() - started, 1e-9))
        mine = list(range(collective.rank, hp.num_trees, collective.world_size))
        trees = Trees.build([samples.per_tree[t] for t in mine], [SEED + 1000 + t for t in mine],
                            Progress("building trees", len(mine), "trees"))
        log.info("Built %d trees on this host.", len(mine))
        groups = collective.gather(trees, root=0) if collective.world_size > 1 else [trees]
        job.metrics.progress(100.0)
        if groups is None:
            return None
        _log_constant_features(samples.per_tree)
        per_tree = len(samples.per_tree[0])
        metadata = {"feature_dim": hp.feature_dim, "num_trees": hp.num_trees, "num_samples_per_tree": per_tree,
                    "num_samples_in_forest": per_tree * hp.num_trees, "rows_seen": samples.rows}
        forest = Forest(Trees.join(groups), metadata)
        joined = forest.trees
        log.info("Random Cut Forest built: ForestInfo{num_trees: %d, num_samples_in_forest: %d, "
                 "num_samples_per_tree: %d, sample_dim: %d, shingle_size: 1, trees_num_nodes: %s, trees_depth: %s}",
                 hp.num_trees, per_tree * hp.num_trees, per_tree, hp.feature_dim,
                 np.diff(np.append(joined.roots, len(joined.cut_dim))).tolist(), joined.depths.tolist())
        model = cls(forest)
        model.score_test(job)
        return model

    def score_test(self, job: TrainingJob[RCFHyperparameters]) -> None:
        """Three-sigma metrics on the test channel (FullyReplicated: the leader reads all of it)."""
        test = job.channels.get("test")
        if test is None:
            log.info("Test data is not provided.")
            return
        hp = job.hyperparameters
        scores, labels = [], []
        for batch in test.batches(hp.mini_batch_size, 0, hp.feature_dim, exact=False):
            labels.append(check_labels(batch.labels, batch.where(0)))
            scores.append(self.forest.score(batch.dense()))
        if not scores:
            raise UserError("The test channel holds no data rows.")
        values = three_sigma_metrics(np.concatenate(scores), np.concatenate(labels), hp.eval_metrics)
        for name, value in values.items():
            job.metrics.emit(TEST_SCORE[name], value)
        for name, value in values.items():
            job.emit(QUALITY[name].name, value)

    # ---- artifact ---------------------------------------------------------------------------
    def save(self, model_dir: Path) -> None:
        self.forest.save(model_dir / MODEL_FILE)

    @classmethod
    def load(cls, model_dir: Path) -> RandomCutForest:
        path = model_dir / MODEL_FILE
        if not path.is_file():
            raise UserError(f"{MODEL_FILE} is missing from the model directory {model_dir}.")
        return cls(Forest.load(path))

    def export(self) -> dict[str, np.ndarray]:
        return {name: array.copy() for name, array in self.forest.arrays().items()}

    # ---- inference --------------------------------------------------------------------------
    def warm_up(self) -> None:
        self.predict(Batch(np.zeros((1, self.feature_dim), np.float32)), Options(verbose=True))

    @classmethod
    def warm_up_kernels(cls) -> None:
        reservoir = Reservoir(4, 2, SEED)
        reservoir.add(np.arange(12, dtype=np.float32).reshape(6, 2))
        sample = reservoir.sample()
        forest = Forest(Trees.build([sample, sample], [0, 1]), {"feature_dim": 2, "num_samples_per_tree": 4})
        forest.score(sample)
        forest.attribution(sample)

    def predict(self, batch: Batch, options: Options) -> Columns:
        batch.check_width(self.feature_dim, "the model's feature_dim")
        x = batch.dense()
        columns = {"score": np.round(self.forest.score(x), DECIMALS)}
        if options.verbose:
            high, low = self.forest.attribution(x)
            columns["attribution"] = np.round(high + low, DECIMALS)
            columns["attribution_high"] = np.round(high, DECIMALS)
            columns["attribution_low"] = np.round(low, DECIMALS)
        return columns


def _log_constant_features(samples: list[np.ndarray]) -> None:
    pooled = np.concatenate(samples)
    constant = np.flatnonzero(pooled.min(axis=0) == pooled.max(axis=0))
    if len(constant):
        log.info("Feature(s) %s are constant in the sample: no tree cuts them, so they do not change scores.",
                 constant.tolist())
