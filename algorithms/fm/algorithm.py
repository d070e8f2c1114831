"""The factorization machines image: training, artifact, inference (docs/images/fm.md).

Training reads recordIO-protobuf only (dense or sparse rows; float32, float64 and int32 tensors are
all decoded to float32). Responses: `score` (ŷ for the regressor, σ(ŷ) for the classifier, float32)
and, for the classifier, `predicted_label` 1.0 when score ≥ 0.5 else 0.0.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from algorithms.fm import training
from algorithms.fm.artifact import MODEL_FILE, read_artifact, write_artifact
from algorithms.fm.hyperparameters import FMHyperparameters
from common.algorithm import Algorithm, TrainingJob
from common.channels import SHARDED, ChannelSpec
from common.data import content_types as ct
from common.data.batch import Batch, Features
from common.data.columns import Columns
from common.errors import UserError
from common.imports import LazyModule
from common.metrics import MetricDefinition
from common.serving.request import Options

kernels = LazyModule("algorithms.fm.kernels")  # numba: loaded by the first call

log = logging.getLogger(__name__)
RECORDIO_ONLY = (ct.RECORDIO,)
CLASSIFIER_METRICS = ("binary_classification_accuracy", "binary_classification_cross_entropy", "binary_f_beta")
F_BETA_TOKEN = "binary_f_1.000"


class FactorizationMachines(Algorithm[FMHyperparameters]):
    name = "fm"
    Hyperparameters = FMHyperparameters
    channels = (
        ChannelSpec("train", required=True, content_types=RECORDIO_ONLY),
        ChannelSpec("test", content_types=RECORDIO_ONLY),
    )
    metrics = (
        MetricDefinition("test:rmse", tunable=True),
        MetricDefinition("test:binary_classification_accuracy", maximize=True, tunable=True),
        MetricDefinition("test:binary_classification_cross_entropy", tunable=True),
        MetricDefinition("test:binary_f_beta", token=F_BETA_TOKEN, maximize=True, tunable=True),
        MetricDefinition("train:rmse"),
        MetricDefinition("train:binary_classification_cross_entropy"),
    )
    metrics_note = ("train:rmse (regressor) or train:binary_classification_cross_entropy (classifier), printed "
                    "after every epoch, averages over that epoch's training rows (of every host) each row's loss "
                    "under the parameters as they were just before the Adam step of its mini-batch: a running "
                    "estimate while the model changes, not a re-scoring of the epoch's final model. The test:* "
                    "metrics score the final model on the test channel once, after the last epoch.")
    request_types = (ct.JSON, ct.JSONLINES, ct.RECORDIO)
    response_types = (ct.JSON, ct.JSONLINES, ct.RECORDIO, ct.CSV)

    def __init__(self, w0: np.ndarray, w: np.ndarray, v: np.ndarray, predictor_type: str,
                 meta: dict[str, Any] | None = None) -> None:
        self.w0 = np.ascontiguousarray(w0, np.float32).reshape(1)
        self.w = np.ascontiguousarray(w, np.float32).reshape(-1)
        self.v = np.ascontiguousarray(v, np.float32)
        self.predictor_type = predictor_type
        self.meta = meta or {"training_parameters": {"feature_dim": self.feature_dim,
                                                     "num_factors": self.num_factors,
                                                     "predictor_type": predictor_type}}

    @property
    def feature_dim(self) -> int:
        return int(self.w.size)

    @property
    def num_factors(self) -> int:
        return int(self.v.shape[1])

    @property
    def is_classifier(self) -> bool:
        return self.predictor_type == "binary_classifier"

    # ---- training -------------------------------------------------------------------------
    @classmethod
    def train(cls, job: TrainingJob[FMHyperparameters]) -> FactorizationMachines | None:
        hp = job.hyperparameters
        state, _ = training.fit(hp, job)
        meta = {"training_parameters": dataclasses.asdict(hp), "algorithm": "factorization-machines"}
        model = cls(state["w0"], state["w"], state["v"], hp.predictor_type, meta)
        _score_test(model, hp, job)
        return model if job.cluster.is_leader else None

    # ---- artifact ---------------------------------------------------------------------------
    def save(self, model_dir: Path) -> None:
        write_artifact(model_dir / MODEL_FILE, self.w0, self.w, self.v, self.meta)

    @classmethod
    def load(cls, model_dir: Path) -> FactorizationMachines:
        w0, w, v, meta = read_artifact(model_dir / MODEL_FILE)
        parameters = meta.get("training_parameters")
        predictor_type = parameters.get("predictor_type") if isinstance(parameters, dict) else None
        if predictor_type not in ("binary_classifier", "regressor"):
            raise UserError(f"meta.json in {MODEL_FILE} must give training_parameters.predictor_type as "
                            "'binary_classifier' or 'regressor'.")
        return cls(w0, w, v, predictor_type, meta)

    def export(self) -> dict[str, np.ndarray]:
        return {"w0": self.w0.copy(), "w": self.w.reshape(-1, 1).copy(), "V": self.v.copy()}

    # ---- inference --------------------------------------------------------------------------
    @classmethod
    def warm_up_kernels(cls) -> None:
        hp = FMHyperparameters(feature_dim=3, num_factors=2, predictor_type="regressor", mini_batch_size=2)
        state = training.initial_state(hp)
        rows = training.Rows(np.array([0, 2, 3], np.int64), np.array([0, 2, 1], np.int32),
                             np.ones(3, np.float32), np.array([1.0, 0.0], np.float32))
        for classifier in (False, True):
            training.Trainer(dataclasses.replace(hp, predictor_type="binary_classifier") if classifier else hp,
                             state).train(rows)
        kernels.predict(rows.indptr, rows.indices, rows.data, state["w0"], state["w"], state["v"], np.zeros(2))

    def warm_up(self) -> None:
        self.predict(Batch(np.zeros((1, self.feature_dim), np.float32)), Options())

    def predict(self, batch: Batch, options: Options) -> Columns:
        batch.check_width(self.feature_dim, "the model's feature_dim")
        score = self.scores(batch.features)
        if not self.is_classifier:
            return {"score": score}
        return {"score": score, "predicted_label": (score >= 0.5).astype(np.float32)}

    def raw_scores(self, features: Features) -> np.ndarray:
        """ŷ per row in float64 (before the classifier's sigmoid)."""
        indptr, indices, data = training.csr_parts(features)
        out = np.empty(indptr.size - 1)
        kernels.predict(indptr, indices, data, self.w0, self.w, self.v, out)
        return out

    def scores(self, features: Features) -> np.ndarray:
        raw = self.raw_scores(features).astype(np.float32)
        if not self.is_classifier:
            return raw
        return _sigmoid32(raw)


def _sigmoid32(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (np.float32(1) / (np.float32(1) + np.exp(-z))).astype(np.float32)


def score_sums(model: FactorizationMachines, rows: training.Rows) -> np.ndarray:
    """Additive test statistics: [rows, squared error, correct, log loss, tp, fp, fn]."""
    raw = np.empty(len(rows))
    kernels.predict(rows.indptr, rows.indices, rows.data, model.w0, model.w, model.v, raw)
    y = rows.labels.astype(np.float64)
    if not model.is_classifier:
        return np.array([len(rows), float(np.sum((raw - y) ** 2)), 0, 0, 0, 0, 0])
    predicted = _sigmoid32(raw.astype(np.float32)) >= 0.5
    positive = y == 1
    log_loss = np.logaddexp(0.0, -np.abs(raw)) + np.maximum(raw, 0.0) - y * raw
    return np.array([len(rows), 0.0, float(np.sum(predicted == positive)), float(log_loss.sum()),
                     float(np.sum(predicted & positive)), float(np.sum(predicted & ~positive)),
                     float(np.sum(~predicted & positive))])


def _score_test(model: FactorizationMachines, hp: FMHyperparameters, job: TrainingJob[FMHyperparameters]) -> None:
    """Test metrics of the final model; sharded test data is summed over hosts (all hold the same model)."""
    test = job.channels.get("test")
    if test is None:
        if job.cluster.is_leader:
            log.info("Test data is not provided.")
        return
    sharded = test.config.distribution == SHARDED and job.collective.world_size > 1
    if not (sharded or job.cluster.is_leader):
        return
    sums = np.zeros(7)
    for rows in training.channel_rows(test, hp, 0):
        sums += score_sums(model, rows)
    if sharded:
        sums = job.collective.allreduce_sum(sums)
    if not job.cluster.is_leader:
        return
    n = sums[0]
    if n == 0:
        raise UserError("The test channel holds no data rows.")
    if not model.is_classifier:
        _emit_test(job, "test:rmse", "rmse", float(np.sqrt(sums[1] / n)))
        return
    tp, fp, fn = sums[4:7]
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    for name, token, value in zip(CLASSIFIER_METRICS, (*CLASSIFIER_METRICS[:2], F_BETA_TOKEN),
                                  (sums[2] / n, sums[3] / n, f1)):
        _emit_test(job, f"test:{name}", token, float(value))


def _emit_test(job: TrainingJob[FMHyperparameters], name: str, token: str, value: float) -> None:
    """The first-party `#test_score` line, then the `#quality_metric` line the published regex reads."""
    job.metrics.emit(MetricDefinition(f"test:{token}", style="test_score"), value)
    job.emit(name, value)
