"""The default input_fn, predict_fn and output_fn of a user inference module, as the framework containers'
encoders give them: text/csv, application/json and application/x-npy bodies to a numpy array,
`model.predict(data)`, and the prediction encoded as JSON (the default), CSV or NPY."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np

from common.data import content_types as ct
from common.data.content_types import MediaType, negotiate_accept
from common.errors import UnsupportedContentType, UserError

NPY = "application/x-npy"
INPUT_TYPES = (ct.CSV, ct.JSON, NPY)
OUTPUT_TYPES = (ct.JSON, ct.CSV, NPY)


def input_fn(body: bytes | str, content_type: str) -> np.ndarray:
    """CSV rows (2-D float32), a JSON array, or an NPY file; 415 for other types."""
    name = MediaType.parse(content_type or "").name
    raw = body.encode() if isinstance(body, str) else bytes(body)
    if name == ct.CSV:
        from common.data.registry import reader_for

        return reader_for(MediaType(ct.CSV), labelled=False).parse(raw).features
    try:
        if name == ct.JSON:
            return np.asarray(json.loads(raw), dtype=np.float32)
        if name == NPY:
            return np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, TypeError, OSError) as exc:
        raise UserError(f"The {name} body could not be read as an array: {exc}.") from None
    raise UnsupportedContentType(f"Content type {content_type} is not supported by the default input_fn; send one "
                                 f"of {', '.join(INPUT_TYPES)}, or define input_fn in the inference module.")


def predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data)


def output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    """JSON, CSV (one row per line) or NPY; 406 for other types."""
    media = negotiate_accept(accept, OUTPUT_TYPES, ct.JSON)
    if media.name == ct.JSON:
        return json.dumps(prediction, default=_tolist).encode(), ct.JSON
    if media.name == ct.CSV:
        rows = np.array(prediction)
        rows = rows.reshape(-1, 1) if rows.ndim < 2 else rows
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        return text.getvalue().encode(), ct.CSV
    buffer = io.BytesIO()
    np.save(buffer, prediction)
    return buffer.getvalue(), NPY


def _tolist(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
