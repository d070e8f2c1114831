"""The model files (docs/images/knn.md, "Model artifact") and the metadata a user may edit.

model_algo-1         the FAISS index (faiss.write_index)
model_algo-1.labels  one little-endian float32 label per indexed vector, in index-id order
model_algo-1.json    metadata: k and predictor_type (editable, read at load time), the dimension
                     reduction {type, seed, target_dim, input_dim}, normalize, version, and what
                     else inference needs (feature_dim, padded_dim, nprobe, the index's description)
model_algo-1.ids     ours only: the training row number of each indexed vector, int64, for the
                     `neighbor_ids` opt-in; absent from AWS-trained models (ids are then index ids)
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from algorithms.knn.reduction import Reduction, Transform
from common.errors import UserError

MODEL_FILE = "model_algo-1"
LABELS_FILE = MODEL_FILE + ".labels"
META_FILE = MODEL_FILE + ".json"
IDS_FILE = MODEL_FILE + ".ids"
VERSION = "1.0"
PREDICTOR_TYPES = ("classifier", "regressor")


@dataclass
class ModelMeta:
    k: int
    predictor_type: str
    feature_dim: int
    reduction: Reduction | None = None
    normalize: bool = False
    padded_dim: int | None = None
    nprobe: int | None = None
    index: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def transform(self) -> Transform:
        return Transform(self.feature_dim, self.reduction, self.padded_dim, self.normalize)

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "predictor_type": self.predictor_type,
            "dimension_reduction": self.reduction.to_json() if self.reduction else None,
            "normalize": self.normalize,
            "version": VERSION,
            "feature_dim": self.feature_dim,
            "padded_dim": self.padded_dim,
            "nprobe": self.nprobe,
            "index": self.index,
            "training": self.training,
        }


def write_meta(meta: ModelMeta, path: Path) -> None:
    path.write_text(json.dumps(meta.to_json(), indent=2) + "\n")


def read_meta(path: Path, index_dim: int) -> ModelMeta:
    """The metadata, checked; `index_dim` fills in feature_dim for models that do not record it."""
    return meta_from_dict(_parse(path), index_dim, path.name)


def _positive_int(raw: dict[str, Any], key: str, where: str, required: bool = False) -> int | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where}: '{key}' must be a positive integer, got {value!r}.")
    return value


def meta_from_dict(raw: dict[str, Any], index_dim: int, where: str = META_FILE) -> ModelMeta:
    k = _positive_int(raw, "k", where, required=True)
    predictor_type = raw.get("predictor_type")
    if predictor_type not in PREDICTOR_TYPES:
        raise UserError(f"{where}: 'predictor_type' must be 'classifier' or 'regressor', got {predictor_type!r}.")
    normalize = raw.get("normalize", False)
    if not isinstance(normalize, bool):
        raise UserError(f"{where}: 'normalize' must be true or false, got {normalize!r}.")
    reduction = None
    if raw.get("dimension_reduction"):
        try:
            reduction = Reduction.from_json(raw["dimension_reduction"])
            if reduction.kind not in ("sign", "fjlt") or min(reduction.target_dim, reduction.input_dim) < 1:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{where}: 'dimension_reduction' must be {{\"type\": \"sign\" or \"fjlt\", \"seed\", "
                            f"\"target_dim\", \"input_dim\"}}, got {raw['dimension_reduction']!r}.") from None
    feature_dim = _positive_int(raw, "feature_dim", where) or (reduction.input_dim if reduction else index_dim)
    return ModelMeta(k, predictor_type, feature_dim, reduction, normalize,  # type: ignore[arg-type]
                     _positive_int(raw, "padded_dim", where), _positive_int(raw, "nprobe", where),
                     dict(raw.get("index") or {}), dict(raw.get("training") or {}))


def _parse(path: Path) -> dict[str, Any]:
    """JSON, or the Python-literal layout the guide prints (`"normalize": False`)."""
    if not path.is_file():
        raise UserError(f"{path.name} is missing from the model directory {path.parent}.")
    text = path.read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UserError(f"{path.name} is not valid JSON: {exc.msg} at line {exc.lineno}.") from None
    if not isinstance(value, dict):
        raise UserError(f"{path.name} must hold a JSON object.")
    return value


def write_arrays(model_dir: Path, labels: np.ndarray, row_ids: np.ndarray) -> None:
    np.ascontiguousarray(labels, dtype="<f4").tofile(model_dir / LABELS_FILE)
    np.ascontiguousarray(row_ids, dtype="<i8").tofile(model_dir / IDS_FILE)


def read_arrays(model_dir: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and row ids of `count` indexed vectors, memory-mapped (shared between server workers)."""
    labels = _read_vector(model_dir / LABELS_FILE, "<f4", count, required=True)
    row_ids = _read_vector(model_dir / IDS_FILE, "<i8", count, required=False)
    return labels, (row_ids if row_ids is not None else np.arange(count, dtype=np.int64))


def _read_vector(path: Path, dtype: str, count: int, required: bool) -> np.ndarray | None:
    if not path.is_file():
        if required:
            raise UserError(f"{path.name} is missing from the model directory {path.parent}.")
        return None
    with open(path, "rb") as stream:
        is_npy = stream.read(6) == b"\x93NUMPY"
    if is_npy:
        values = np.load(path, mmap_mode="r").reshape(-1)
    else:
        size = np.dtype(dtype).itemsize
        if path.stat().st_size != count * size:
            raise UserError(f"{path.name} holds {path.stat().st_size} bytes, but the index holds {count} vectors "
                            f"({count * size} bytes of {np.dtype(dtype).name} expected).")
        values = np.memmap(path, dtype=dtype, mode="r") if count else np.empty(0, dtype)
    if len(values) != count:
        raise UserError(f"{path.name} holds {len(values)} values, but the index holds {count} vectors.")
    return values
