"""Request bodies to DMatrix, as `sagemaker_xgboost_container.encoder` (the shared readers parse them)."""

from __future__ import annotations

from typing import Any

from algorithms.xgboost.dmatrix_io import request_dmatrix
from common.data import content_types as ct


def csv_to_dmatrix(input: bytes | str, dtype: Any = None) -> Any:
    """CSV rows of features only (no label), comma-separated; empty fields are missing values."""
    return request_dmatrix(input, ct.CSV)


def libsvm_to_dmatrix(string_like: bytes | str) -> Any:
    """`[label] index:value ...` rows; a leading label is ignored."""
    return request_dmatrix(string_like, ct.LIBSVM)


def recordio_protobuf_to_dmatrix(string_like: bytes) -> Any:
    """SageMaker recordIO-protobuf Records, dense or sparse; labels are ignored."""
    return request_dmatrix(string_like, ct.RECORDIO)


def decode(obj: bytes | str, content_type: str) -> Any:
    """Any of the three by Content-Type (parameters and aliases such as text/x-libsvm allowed); others raise
    an error with HTTP status 415."""
    return request_dmatrix(obj, content_type)
