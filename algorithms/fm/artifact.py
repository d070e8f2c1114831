"""`model_algo-1`: a zip of `symbol.json`, `params` (MXNet NDArray file) and `meta.json` (docs/images/fm.md).

`params` holds, as `Module.save_checkpoint` names them, `arg:w0_weight` (1,), `arg:w1_weight` (d, 1) and
`arg:v` (d, k), float32. Users rename the files to `model-symbol.json` / `model-0000.params` and call
`mx.module.Module.load('./model', 0, False, label_names=['out_label'])`. Reading also takes the older
layout (`Linear_Plus_Bias_bias` (1,), `Linear_Plus_Bias_weight` (1, d), `v` (k, d)), names with or
without the `arg:` prefix. `symbol.json` is the MXNet graph of the model equation (as in MXNet's sparse
FM example); it is written for MXNet users and never read here.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from common.data.ndarray_file import dump_ndarrays, load_ndarrays
from common.errors import UserError

MODEL_FILE = "model_algo-1"
MXNET_VERSION = 10901


def write_artifact(path: Path, w0: np.ndarray, w: np.ndarray, v: np.ndarray, meta: dict[str, Any]) -> None:
    params = {
        "arg:w0_weight": np.asarray(w0, np.float32).reshape(1),
        "arg:w1_weight": np.asarray(w, np.float32).reshape(-1, 1),
        "arg:v": np.asarray(v, np.float32),
    }
    logistic = meta["training_parameters"]["predictor_type"] == "binary_classifier"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("symbol.json", json.dumps(symbol_graph(logistic), indent=2))
        archive.writestr("params", dump_ndarrays(params))
        archive.writestr("meta.json", json.dumps(meta, indent=2))


def read_artifact(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(w0 (1,), w (d,), v (d, k), meta) from a model_algo-1 zip; UserError naming what is wrong."""
    if not path.is_file():
        raise UserError(f"{MODEL_FILE} is missing from the model directory {path.parent}.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = {"params", "meta.json"} - names
            if missing:
                raise UserError(f"{MODEL_FILE} has no {' or '.join(sorted(missing))}; it holds {sorted(names)}.")
            raw_params = archive.read("params")
            meta = json.loads(archive.read("meta.json"))
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{MODEL_FILE} is not a factorization machines zip archive ({exc}).") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"meta.json in {MODEL_FILE} is not valid JSON.") from None
    arrays = load_ndarrays(raw_params, name=f"params in {MODEL_FILE}")
    if not isinstance(arrays, dict):
        raise UserError(f"params in {MODEL_FILE} must hold named arrays (w0_weight, w1_weight, v).")
    w0, w, v = _parameters({name.split(":", 1)[-1]: value for name, value in arrays.items()})
    if not isinstance(meta, dict):
        raise UserError(f"meta.json in {MODEL_FILE} must be a JSON object.")
    return w0, w, v, meta


def _parameters(named: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if {"w0_weight", "w1_weight", "v"} <= set(named):
        w0, w, v = named["w0_weight"], named["w1_weight"], named["v"]
        if w.ndim != 2 or w.shape[1] != 1:
            raise UserError(f"w1_weight in {MODEL_FILE} must have shape (feature_dim, 1); got {w.shape}.")
    elif {"Linear_Plus_Bias_bias", "Linear_Plus_Bias_weight", "v"} <= set(named):
        w0, w, v = named["Linear_Plus_Bias_bias"], named["Linear_Plus_Bias_weight"], named["v"]
        if w.ndim != 2 or w.shape[0] != 1:
            raise UserError(f"Linear_Plus_Bias_weight in {MODEL_FILE} must have shape (1, feature_dim); "
                            f"got {w.shape}.")
        v = v.T  # the older layout stores the factors as (num_factors, feature_dim)
    else:
        raise UserError(f"params in {MODEL_FILE} must hold w0_weight, w1_weight and v; it holds {sorted(named)}.")
    d = w.size
    if w0.size != 1:
        raise UserError(f"The bias in {MODEL_FILE} must hold one value; got shape {w0.shape}.")
    if v.ndim != 2 or v.shape[0] != d or v.shape[1] < 1:
        raise UserError(f"v in {MODEL_FILE} must have shape ({d}, num_factors); got {v.shape}.")
    as32 = [np.ascontiguousarray(a, np.float32) for a in (w0.reshape(1), w.reshape(-1), v)]
    if not all(np.isfinite(a).all() for a in as32):
        raise UserError(f"The parameters in {MODEL_FILE} contain NaN or infinite values.")
    return as32[0], as32[1], as32[2]


def symbol_graph(logistic: bool) -> dict[str, Any]:
    """The MXNet symbol JSON of ŷ = w0 + x·w1 + ½ Σ_f [(x·v)² − x²·(v²)] with its output layer."""
    nodes: list[dict[str, Any]] = []

    def node(op: str, name: str, inputs: tuple[int, ...] = (), **attrs: str) -> int:
        entry: dict[str, Any] = {"op": op, "name": name, "inputs": [[i, 0, 0] for i in inputs]}
        if attrs:
            entry["attrs"] = attrs
        nodes.append(entry)
        return len(nodes) - 1

    data = node("null", "data", __storage_type__="2")
    w1 = node("null", "w1_weight")
    linear = node("dot", "dot0", (data, w1))
    w0 = node("null", "w0_weight")
    linear = node("broadcast_add", "broadcast_add0", (linear, w0))
    v = node("null", "v")
    xv = node("dot", "dot1", (data, v))
    xv_squared = node("square", "square0", (xv,))
    half_xv_squared = node("_mul_scalar", "_mulscalar0", (xv_squared,), scalar="0.5")
    both = node("Concat", "concat0", (linear, half_xv_squared), dim="1", num_args="2")
    total = node("sum", "sum0", (both,), axis="1", keepdims="True")
    v_squared = node("_square_sum", "_square_sum0", (v,), axis="1", keepdims="True")
    x_squared = node("square", "square1", (data,))
    diagonal = node("dot", "dot2", (x_squared, v_squared))
    half_diagonal = node("_mul_scalar", "_mulscalar1", (diagonal,), scalar="-0.5")
    score = node("elemwise_add", "elemwise_add0", (total, half_diagonal))
    label = node("null", "out_label")
    output = node("LogisticRegressionOutput" if logistic else "LinearRegressionOutput", "out", (score, label))
    return {
        "nodes": nodes,
        "arg_nodes": [i for i, n in enumerate(nodes) if n["op"] == "null"],
        "node_row_ptr": list(range(len(nodes) + 1)),
        "heads": [[output, 0, 0]],
        "attrs": {"mxnet_version": ["int", MXNET_VERSION]},
    }
