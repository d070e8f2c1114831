"""DMatrix in, bytes out, for script mode: what `sagemaker_xgboost_container`'s data_utils and encoder give
training scripts, and the default input_fn of user inference modules. All parsing is the shared
readers' (common/data) and algorithm mode's (data.py). Script mode imports xgboost plainly, so that the
user's code keeps its scikit-learn API (algorithm mode hides scikit-learn: lib.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from algorithms.xgboost import data as data_module
from common.channels import FILE, PIPE, REPLICATED, ChannelConfig, ChannelSpec, DataChannel
from common.data import content_types as ct
from common.data.content_types import MediaType
from common.data.registry import reader_for
from common.errors import UnsupportedContentType, UserError

log = logging.getLogger(__name__)
REQUEST_TYPES = (ct.CSV, ct.LIBSVM, ct.RECORDIO)
TRAINING_TYPES = (ct.CSV, ct.LIBSVM, ct.PARQUET, ct.RECORDIO)


def request_dmatrix(body: bytes | str, content_type: str | None) -> Any:
    """A request body (CSV without label, libsvm, recordIO-protobuf) as a DMatrix; 415 for other types."""
    import xgboost as xgb

    media = MediaType.parse(content_type or "")
    if media.name not in REQUEST_TYPES:
        raise UnsupportedContentType(
            f"Content type {content_type} is not supported by the default input_fn; send one of "
            f"{', '.join(REQUEST_TYPES)}, or define input_fn in the inference module.")
    raw = body.encode() if isinstance(body, str) else bytes(body)
    return xgb.DMatrix(reader_for(media, labelled=False).parse(raw).features, missing=np.nan)




class _PathChannel(DataChannel):
    """A folder (read recursively) or one file, as a File-mode channel; Pipe mode reads `<path>_0`."""

    def __init__(self, path: Path, media: MediaType, pipe: bool) -> None:
        spec = ChannelSpec(path.name, content_types=TRAINING_TYPES)
        super().__init__(ChannelConfig(path.name, media, PIPE if pipe else FILE, REPLICATED, spec), path.parent)
        self.path = path

    def files(self) -> list[Path]:
        return [self.path] if self.path.is_file() else super().files()


def channel_dmatrix(path: str | os.PathLike, content_type: str, csv_weights: int = 0, is_pipe: bool = False) -> Any:
    """Labelled training data under `path` as a DMatrix; None when the path does not exist or holds no rows."""
    media = MediaType.parse(str(content_type))
    if media.name not in TRAINING_TYPES:
        raise UserError(f"{content_type} is not an accepted ContentType: use csv, libsvm, parquet or "
                        "recordio-protobuf (or their text/csv, text/libsvm, ... names).")
    import xgboost  # noqa: F401 - script mode: a plain import first, scikit-learn API included (lib.py)

    location = Path(path)
    if not (Path(f"{location}_0") if is_pipe else location).exists():
        log.info("Data path %s does not exist.", location)
        return None
    data = data_module.load(_PathChannel(location, media, is_pipe), media, int(csv_weights) == 1)
    if not len(data):
        log.info("Data path %s holds no rows.", location)
        return None
    return data_module.dmatrix(data)
