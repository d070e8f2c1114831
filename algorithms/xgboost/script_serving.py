"""XGBoost framework (script) mode, serving (spec xgboost.md §8, contract §4.6).

A user module is named by SAGEMAKER_PROGRAM (the SDK sets it with SAGEMAKER_SUBMIT_DIRECTORY), or is the
`code/inference.py` an SDK-repacked model.tar.gz carries. Its code comes from SAGEMAKER_SUBMIT_DIRECTORY
(a folder, `file://`, a sourcedir.tar.gz, S3 with boto3), else the model's code/ folder, else /opt/ml/code.
`model_fn(model_dir)` is required; `input_fn(body, content_type)`, `predict_fn(data, model)` and
`output_fn(prediction, accept)` default to: body -> DMatrix (CSV, libsvm, recordIO-protobuf), `model.predict(
data, validate_features=False)`, and JSON / CSV / NPY encoding; or `transform_fn(model, body, content_type,
accept)` alone does it all. The body is text for text/csv and application/json, bytes otherwise; a missing
Content-Type means application/json, a missing or */* Accept SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, else JSON.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from algorithms.xgboost import dmatrix_io, user_code
from algorithms.xgboost.hyperparameters import XGBoostHyperparameters
from common import content_types as ct
from common.algorithm import Algorithm, TrainingJob
from common.batch import Batch
from common.content_types import MediaType
from common.encoders import Columns
from common.errors import UserError
from common.paths import Paths

log = logging.getLogger(__name__)
PROGRAM_VAR, SUBMIT_VAR = "SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY"
SAVED_MODULE = "inference.py"  # what the SDK's repack puts in model.tar.gz's code/ (the toolkits' default name)
HOOKS = ("input_fn", "predict_fn", "output_fn")
TRANSFORM_CONFLICT = "Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn"


def locate(model_dir: Path) -> tuple[str, str] | None:
    """(program, code source) when serving a user module; None in algorithm mode."""
    program = os.environ.get(PROGRAM_VAR, "").strip()
    saved = model_dir / "code"
    if not program:
        return (SAVED_MODULE, str(saved)) if (saved / SAVED_MODULE).is_file() else None
    source = os.environ.get(SUBMIT_VAR, "").strip()
    if not source:
        source = str(saved if (saved / program).is_file() else Paths.from_env().base / "code")
    return program, source


def code_folder(source: str) -> Path:
    paths = Paths.from_env()
    return user_code.fetch(source, paths, paths.base / "code")


def prepare(model_dir: Path) -> None:
    """In the server's parent: fetch the code once and install its requirements.txt."""
    found = locate(model_dir)
    if found is not None:
        log.info("Serving with the user module %s from %s.", *found)
        user_code.install_requirements(code_folder(found[1]))


def load(model_dir: Path) -> UserModule | None:
    found = locate(model_dir)
    if found is None:
        return None
    program, source = found
    return UserModule(user_code.import_module(code_folder(source), program), model_dir)


class UserModule(Algorithm):
    """A model served by the user's functions; the shared readers and encoders are never used."""

    name = "xgboost"
    Hyperparameters = XGBoostHyperparameters
    channels = ()

    def __init__(self, module: Any, model_dir: Path) -> None:
        found = {n: getattr(module, n, None) for n in ("model_fn", "transform_fn", *HOOKS)}
        if found["model_fn"] is None:
            raise UserError(f"The inference module {module.__name__} has no model_fn(model_dir): XGBoost script mode "
                            "has no default way to load a model, so define one.", status=500)
        if found["transform_fn"] is not None and any(found[n] is not None for n in HOOKS):
            raise UserError(TRANSFORM_CONFLICT, status=500)
        self.transform_fn = found["transform_fn"]
        self.input_fn = found["input_fn"] or dmatrix_io.request_dmatrix
        self.predict_fn = found["predict_fn"] or _default_predict
        self.output_fn = found["output_fn"] or dmatrix_io.encode_prediction
        self.model = _call("model_fn", found["model_fn"], str(model_dir))

    def respond(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        content_type = content_type or ct.JSON
        if not accept or accept.strip() == "*/*":
            accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or ct.JSON
        data: bytes | str = body
        if MediaType.parse(content_type).name in (ct.CSV, ct.JSON):
            try:
                data = body.decode()
            except UnicodeDecodeError:
                raise UserError(f"The {content_type} body is not UTF-8 text.") from None
        if self.transform_fn is not None:
            result = _call("transform_fn", self.transform_fn, self.model, data, content_type, accept)
        else:
            features = _call("input_fn", self.input_fn, data, content_type)
            prediction = _call("predict_fn", self.predict_fn, features, self.model)
            result = _call("output_fn", self.output_fn, prediction, accept)
        return _as_response(result, accept)

    @classmethod
    def train(cls, job: TrainingJob) -> None:
        raise NotImplementedError("user modules serve; script_training.py runs training scripts")

    def save(self, model_dir: Path) -> None:
        raise NotImplementedError("the user's training script saves its model")

    @classmethod
    def load(cls, model_dir: Path) -> UserModule:
        module = load(model_dir)
        if module is None:
            raise UserError(f"Set {PROGRAM_VAR} to serve with a user module.")
        return module

    def predict(self, batch: Batch, accept: MediaType) -> Columns:
        raise NotImplementedError("respond() answers every request")


def _default_predict(data: Any, model: Any) -> Any:
    return model.predict(data, validate_features=False)


def _call(name: str, function: Callable[..., Any], *args: Any) -> Any:
    """The user's function; its own exceptions become one readable 500 (the traceback goes to the log)."""
    try:
        return function(*args)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        log.exception("%s failed.", name)
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise UserError(f"{name} raised {type(exc).__name__}: {lines[0][:300] if lines else ''}", status=500) from None


def _as_response(result: Any, accept: str) -> tuple[bytes, str]:
    content_type = accept
    if isinstance(result, tuple) and len(result) == 2:
        result, content_type = result
    if isinstance(result, str):
        result = result.encode()
    if not isinstance(result, (bytes, bytearray, memoryview)):
        raise UserError(f"output_fn returned {type(result).__name__}; return bytes, str or (body, content_type).",
                        status=500)
    return bytes(result), str(content_type)
