"""k-means hyperparameters, as the SDK 2.x KMeans estimator sends them.

Counts end at INT32_MAX (the kernels index in 32 or 64 bits); `k` stays unbounded because training
refuses a k above the number of rows before allocating anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from common.constraints import INT32_MAX, AutoOr, Boolean, Choice, Integer, ListOf, Real
from common.hyperparameters import Hyperparameters, hp

AUTO_EXTRA_CENTER_FACTOR = 10
AUTO_NUM_TRIALS = 10
COUNT = Integer(1, INT32_MAX)


@dataclass(frozen=True)
class KMeansHyperparameters(Hyperparameters):
    feature_dim: int = hp(COUNT, doc="number of features")
    k: int = hp(Integer(1), doc="number of clusters")
    epochs: int = hp(COUNT, 1, "passes over the training data")
    eval_metrics: tuple[str, ...] = hp(ListOf(Choice("msd", "ssd")), ("msd",), "test metrics to report")
    extra_center_factor: int | str = hp(AutoOr(COUNT), "auto", "centres kept = k x this, reduced at the end")
    half_life_time_size: int = hp(Integer(0, INT32_MAX), 0, "points after which a point's weight halves; 0 = no decay")
    init_method: str = hp(Choice("random", "kmeans++"), "random")
    local_lloyd_init_method: str = hp(Choice("random", "kmeans++"), "kmeans++")
    local_lloyd_max_iter: int = hp(COUNT, 300)
    local_lloyd_num_trials: int | str = hp(AutoOr(COUNT), "auto")
    local_lloyd_tol: float = hp(Real(0, 1), 0.0001, "relative change of the loss that stops Lloyd")
    mini_batch_size: int = hp(COUNT, 5000)
    force_dense: bool = hp(Boolean(), True, "sparse records are densified either way")

    # The SDK's Python argument names, for a helpful did-you-mean.
    hints: ClassVar[dict[str, str]] = {
        "max_iterations": "local_lloyd_max_iter",
        "tol": "local_lloyd_tol",
        "num_trials": "local_lloyd_num_trials",
        "local_init_method": "local_lloyd_init_method",
        "center_factor": "extra_center_factor",
    }

    @property
    def center_factor(self) -> int:
        factor = self.extra_center_factor
        return AUTO_EXTRA_CENTER_FACTOR if factor == "auto" else int(factor)

    @property
    def num_trials(self) -> int:
        trials = self.local_lloyd_num_trials
        return AUTO_NUM_TRIALS if trials == "auto" else int(trials)
