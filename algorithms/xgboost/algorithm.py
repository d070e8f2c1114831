"""The XGBoost image: SageMaker XGBoost algorithm mode (docs/images/xgboost.md), current (1.7-1 and later) behaviour.

Artifact: `xgboost-model`, XGBoost's native UBJSON (`xgb.Booster().load_model(path)` reads it); a `_kfold` job
(kfold.py) writes one per fold, `xgboost-model-0` .. `xgboost-model-<k * _num_cv_round - 1>`; an image tag that
emulates a version before 1.3-1 writes a pickled Booster instead (versions.py). Pickled models load as AWS's
images load them, logging it, unless SAGEMAKER_XGBOOST_ALLOW_PICKLE=false. Several
`xgboost-model*` files are an ensemble (mean; vote for multi:softmax and binary:hinge) unless
SAGEMAKER_INFERENCE_ENSEMBLE=false. Response switches: see inference.py. Framework (script) mode, in the same
image: common/script_mode, with the defaults and the `sagemaker_xgboost_container` helpers (compat/) of SCRIPT_MODE.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from algorithms.xgboost import inference, versions
from algorithms.xgboost.artifact import MODEL_FILE, model_files
from algorithms.xgboost.hyperparameters import XGBoostHyperparameters
from algorithms.xgboost.import_xgboost import xgboost
from algorithms.xgboost.metrics import definitions
from common.algorithm import Algorithm, TrainingJob
from common.channels import FILE, REPLICATED, ChannelSpec
from common.data import content_types as ct
from common.data.batch import Batch
from common.data.columns import Columns
from common.errors import UserError
from common.script_mode import ScriptMode
from common.serving.request import Options

log = logging.getLogger(__name__)
COMPAT_DIR = Path(__file__).resolve().parent / "compat"  # the importable sagemaker_xgboost_container
PICKLE_VAR, ENSEMBLE_VAR = "SAGEMAKER_XGBOOST_ALLOW_PICKLE", "SAGEMAKER_INFERENCE_ENSEMBLE"
TRAINING_TYPES = (ct.LIBSVM, ct.CSV, ct.PARQUET, ct.RECORDIO)
VOTING = ("multi:softmax", "binary:hinge")


def _script_model_fn(model_dir: str) -> Any:
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise UserError(f"the model directory {model_dir} has no {MODEL_FILE}.")
    return _booster(path.read_bytes(), MODEL_FILE)


def _script_input_fn(body: bytes | str, content_type: str) -> Any:
    from algorithms.xgboost.dmatrix_io import request_dmatrix

    return request_dmatrix(body, content_type)


# The defaults of AWS's XGBoost image (a body to a DMatrix, predict without feature validation), and its helpers
# on the path; the helpers import this image's own code, so the repository root goes with them.
SCRIPT_MODE = ScriptMode("XGBoost", model_fn=_script_model_fn, input_fn=_script_input_fn,
                         predict_fn=lambda data, model: model.predict(data, validate_features=False),
                         paths=(COMPAT_DIR, COMPAT_DIR.parents[2]))


class XGBoost(Algorithm[XGBoostHyperparameters]):
    name = "xgboost"
    Hyperparameters = XGBoostHyperparameters
    channels = (
        ChannelSpec("train", required=True, content_types=TRAINING_TYPES, csv_label_size=1),
        ChannelSpec("validation", content_types=TRAINING_TYPES, csv_label_size=1),
        ChannelSpec("code", content_types=("text/python",), input_modes=(FILE,), distributions=(REPLICATED,)),
    )
    metrics = definitions()
    metrics_note = ("on each round's line [n] train-<metric>:<value> validation-<metric>:<value>, train- evaluates "
                    "the model after that round on the train channel's rows and validation- on the validation "
                    "channel's rows (with _kfold, on the fold held out); on several hosts XGBoost combines every "
                    "host's rows.")
    default_content_type = ct.LIBSVM
    request_types = (ct.CSV, ct.LIBSVM, ct.RECORDIO, ct.JSON, ct.JSONLINES)
    response_types = (ct.CSV, ct.JSON, ct.JSONLINES, ct.RECORDIO)
    default_accept = ct.CSV
    handles_missing_values = True
    empty_body_status = 204  # as AWS's image: an empty body gets 204 and an empty body, before any check
    script_mode = SCRIPT_MODE

    def __init__(self, boosters: list[Any]) -> None:
        self.boosters = boosters
        config = json.loads(boosters[0].save_config())["learner"]
        self.objective = str(config["objective"]["name"])
        self.num_class = int(config["learner_model_param"].get("num_class", 0) or 0)
        self.num_features = int(boosters[0].num_features())
        self.keys: list[str] | None = None  # SAGEMAKER_INFERENCE_OUTPUT's selectable keys, set by `load`
        threads = os.environ.get("OMP_NUM_THREADS", "1")
        for booster in boosters:
            booster.set_param({"nthread": int(threads) if threads.isdigit() else 1})

    @classmethod
    def train(cls, job: TrainingJob[XGBoostHyperparameters]) -> XGBoost | None:
        from algorithms.xgboost.training import fit

        models = fit(job)
        return None if models is None else cls([_booster(m, n) for m, n in zip(models, model_files(len(models)))])

    def save(self, model_dir: Path) -> None:
        pickled = versions.current().pickled_model  # what a notebook of that version reads with pickle.load
        for name, booster in zip(model_files(len(self.boosters)), self.boosters):
            raw = pickle.dumps(booster, protocol=4) if pickled else bytes(booster.save_raw("ubj"))
            (model_dir / name).write_bytes(raw)

    @classmethod
    def load(cls, model_dir: Path) -> Algorithm:
        files = sorted(p for p in model_dir.iterdir() if p.is_file() and not p.name.startswith(".")) \
            if model_dir.is_dir() else []
        named = [p for p in files if p.name.startswith(MODEL_FILE)]
        for skipped in (p for p in files if p not in named):
            log.warning("Ignoring %s in the model directory: model files are named %s*.", skipped.name, MODEL_FILE)
        candidates = named or files
        if not candidates:
            raise UserError(f"The model directory {model_dir} has no {MODEL_FILE} file.")
        if os.environ.get(ENSEMBLE_VAR, "true").lower() == "false":
            candidates = candidates[:1]
        model = cls([_booster(p.read_bytes(), p.name) for p in candidates])
        model.keys = inference.selected_keys()
        model.response_layout = inference.response_layout(model.keys)
        return model

    @classmethod
    def describe(cls) -> dict[str, Any]:
        described = super().describe()
        # XGBoost prints no progress/throughput lines, and a job takes at most 40 metric definitions.
        described["metric_definitions"] = [m.to_json() for m in cls.metrics]
        described["inference"]["environment"] = {
            inference.SELECTABLE_VAR: "comma-separated: " + ", ".join(inference.KEYS),
            inference.CSV_OUTPUT_VAR: "per_line (default) or comma_joined (the 1.0-1 image's one-line CSV)",
            PICKLE_VAR: "false to refuse pickled models (unpickling can run code); default true, as AWS's images",
            versions.VERSION_VAR: "the emulated SageMaker XGBoost version (set by the image tag): "
                                  + ", ".join(versions.VERSIONS),
            ENSEMBLE_VAR: "false to use only the first xgboost-model* file",
        }
        return described

    def export(self) -> dict[str, np.ndarray]:
        booster = self.boosters[0]
        gain = booster.get_score(importance_type="gain")
        return {"trees": np.array(booster.get_dump(dump_format="json")),
                "feature_importance_gain": np.array([gain.get(f"f{i}", 0.0) for i in range(self.num_features)])}

    def warm_up(self) -> None:
        self.predict(Batch(np.zeros((1, self.num_features), np.float32)), Options())

    def predict(self, batch: Batch, options: Options) -> Columns:
        features = self._features(batch)
        preds = [b.inplace_predict(features, validate_features=False) for b in self.boosters]
        if len(preds) == 1:
            combined = preds[0]
        elif self.objective in VOTING:
            combined = np.array([np.bincount(col.astype(np.int64)).argmax() for col in np.stack(preds).T], np.float32)
        else:
            combined = np.mean(preds, axis=0, dtype=np.float32)
        if self.keys is None:
            return {"score": combined}
        return inference.selectable_columns(combined, self.objective, self.num_class, self.keys)

    def _features(self, batch: Batch) -> Any:
        """Exactly the model's columns (sparse rows may stop early: their missing tail is padded)."""
        width, expected = batch.width, self.num_features
        if batch.is_sparse and width <= expected:
            matrix = batch.features
            return matrix if width == expected else type(matrix)(
                (matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], expected))
        if width != expected:
            hint = " (is the label column still in?)" if width == expected + 1 else ""
            raise UserError(f"The request has {width} features per row but the model was trained with "
                            f"{expected}{hint}; send exactly {expected} columns, no label.")
        return batch.features


def _booster(raw: bytes, name: str) -> Any:
    xgb = xgboost()
    if raw[:1] == b"\x80":  # a pickle (protocol 2 and later)
        return _unpickle(raw, name)
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(raw))
    except xgb.core.XGBoostError as exc:
        reason = str(exc).splitlines()[0]
        raise UserError(f"{name} is not a model XGBoost {xgb.__version__} can load ({reason}); re-save it with "
                        "Booster.save_model('xgboost-model.json') in the XGBoost that wrote it.") from None
    return booster


def _unpickle(raw: bytes, name: str) -> Any:
    """A model artifact pickled by SageMaker XGBoost before 1.3-1 (or joblib): the deployer's own file, loaded as
    AWS's serving code loads it, unless SAGEMAKER_XGBOOST_ALLOW_PICKLE=false. Request bodies are never unpickled."""
    if os.environ.get(PICKLE_VAR, "true").lower() == "false":
        raise UserError(
            f"{name} is a Python pickle (what SageMaker XGBoost before 1.3-1 and joblib.dump write), and "
            f"{PICKLE_VAR}=false refuses pickles: convert it with booster = pickle.load(f); "
            "booster.save_model('xgboost-model.json') and rename it to xgboost-model, or unset the variable.")
    log.info("%s is a pickled model (SageMaker XGBoost before 1.3-1); loading it with pickle.", name)
    try:
        model = pickle.loads(raw)  # noqa: S301 - the deployer's artifact, as AWS's images load it
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the artifact's
        raise UserError(f"{name} could not be unpickled: {exc}.") from None
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    if type(booster).__name__ != "Booster":
        raise UserError(f"{name} unpickles to {type(model).__name__}, not an XGBoost Booster.")
    return booster
