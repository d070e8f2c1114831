"""What the LightGBM and CatBoost images share as JumpStart serves them: the channels, the request and
response types, the response layout and the warm-up request."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from common.algorithm import Algorithm, H
from common.channels import FILE, ChannelSpec
from common.data import content_types as ct
from common.data.batch import Batch
from common.data.columns import ResponseLayout
from common.serving.request import Options

# JumpStart's response layout: one JSON object of arrays (one object per row for JSON Lines), numbers as they are.
JUMPSTART_LAYOUT = ResponseLayout(envelope=None, numbers="native")
MODEL_CONTENT_TYPES = (ct.CSV, "application/x-tar", "application/gzip", "application/octet-stream")
CHANNELS = (
    ChannelSpec("train", content_types=(ct.CSV,), input_modes=(FILE,)),
    ChannelSpec("training", content_types=(ct.CSV,), input_modes=(FILE,)),
    ChannelSpec("validation", content_types=(ct.CSV,), input_modes=(FILE,)),
    ChannelSpec("model", content_types=MODEL_CONTENT_TYPES, input_modes=(FILE,)),
)


class TabularAlgorithm(Algorithm[H]):
    channels = CHANNELS
    default_content_type: ClassVar[str] = ct.CSV
    request_types = (ct.CSV, ct.JSON, ct.JSONLINES)
    response_types = (ct.JSON, ct.JSONLINES, ct.CSV)
    default_accept = ct.JSON
    response_layout = JUMPSTART_LAYOUT
    handles_missing_values = True
    num_features: int

    def warm_up(self) -> None:
        self.predict(Batch(np.zeros((1, self.num_features), np.float32)), Options(verbose=True))
