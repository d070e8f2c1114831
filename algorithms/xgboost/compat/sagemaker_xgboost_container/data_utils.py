"""Training data to DMatrix, as `sagemaker_xgboost_container.data_utils` (the image's own channel readers)."""

from __future__ import annotations

import os
from typing import Any

from algorithms.xgboost.dmatrix_io import channel_dmatrix


def get_dmatrix(data_path: str | os.PathLike, content_type: str, csv_weights: int = 0, is_pipe: bool = False) -> Any:
    """The labelled rows of a folder (read recursively, hidden and _-prefixed files skipped) or of one file.

    content_type: csv, libsvm, parquet, recordio-protobuf or their media types; CSV has the label first (and
    the instance weight second with csv_weights=1). Pipe mode reads the FIFO `<data_path>_0`. None when the
    path does not exist or holds no rows (so `include_in_training=dtrain is not None` works on hosts that
    got no shard).
    """
    return channel_dmatrix(data_path, content_type, csv_weights, is_pipe)
