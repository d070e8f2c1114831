"""PCA hyperparameters, as the SDK 2.x PCA estimator sends them.

`num_components` is bounded by feature_dim (check) and `extra_components` only widens the sketch up to
feature_dim, so both stay unbounded; the sketch of randomized mode must fit in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from common.constraints import INT32_MAX, Boolean, Choice, Integer
from common.hyperparameters import Hyperparameters, hp

AUTO_EXTRA = -1          # extra_components=-1 means max(MIN_EXTRA, num_components)
MIN_EXTRA = 10
# float64 copies of the feature_dim x sketch basis that randomized mode holds at once
SKETCH_COPIES = 4


@dataclass(frozen=True)
class PCAHyperparameters(Hyperparameters):
    feature_dim: int = hp(Integer(1, INT32_MAX), doc="number of features")
    mini_batch_size: int = hp(Integer(1, INT32_MAX), doc="rows per mini-batch; the result does not depend on it")
    num_components: int = hp(Integer(1), doc="number of principal components")
    algorithm_mode: str = hp(Choice("regular", "randomized"), "regular",
                             "regular: exact covariance; randomized: streamed randomized range finder")
    extra_components: int = hp(Integer(-1), AUTO_EXTRA,
                               "randomized mode oversampling; -1 = max(10, num_components); ignored in regular mode")
    subtract_mean: bool = hp(Boolean(), True, "center the data at training and inference")

    # Names users bring from scikit-learn or other tools.
    hints: ClassVar[dict[str, str]] = {
        "n_components": "num_components",
        "components": "num_components",
        "svd_solver": "algorithm_mode",
        "mode": "algorithm_mode",
        "n_oversamples": "extra_components",
        "center": "subtract_mean",
        "batch_size": "mini_batch_size",
    }

    def check(self) -> list[str]:
        if self.num_components > self.feature_dim:
            return [f"num_components={self.num_components} is larger than feature_dim={self.feature_dim}; "
                    "it can be at most feature_dim"]
        needed = SKETCH_COPIES * 8 * self.feature_dim * self.sketch_size
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if self.algorithm_mode == "randomized" and needed > physical:
            return [f"algorithm_mode=randomized needs about {needed / 2**30:.1f} GiB for feature_dim="
                    f"{self.feature_dim} and a sketch of {self.sketch_size} columns (num_components + "
                    f"extra_components), more than this machine's {physical / 2**30:.1f} GiB; lower feature_dim "
                    "to the data's width, or num_components or extra_components"]
        return []

    @property
    def extra(self) -> int:
        if self.extra_components == AUTO_EXTRA:
            return max(MIN_EXTRA, self.num_components)
        return self.extra_components

    @property
    def sketch_size(self) -> int:
        """Columns of the randomized sketch: num_components + extra, at most feature_dim."""
        return min(self.feature_dim, self.num_components + self.extra)
