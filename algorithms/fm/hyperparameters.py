"""Factorization machines hyperparameters, as the SDK 2.x FactorizationMachines estimator sends them.

Optional floats the guide gives no default (the init scale/value, clip_gradient, eps, rescale_grad) are None
when absent. `uniform` needs `*_init_scale`, `constant` needs `*_init_value`; eps defaults to 1e-8,
rescale_grad to 1/rows of the mini-batch, no clipping. Feature indices are int32 in the kernels and the
weights float32, hence the INT32_MAX and FLOAT32_MAX bounds; whether feature_dim x num_factors fits in
memory is checked when training starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from common.constraints import FLOAT32_MAX, INT32_MAX, Choice, Integer, Real
from common.hyperparameters import Hyperparameters, hp

GROUPS = ("bias", "linear", "factors")
INIT_METHODS = ("normal", "uniform", "constant")
DEFAULT_EPS = 1e-8


def _positive() -> Real:
    return Real(0, low_open=True)


def _init(low: float = 0) -> Real:
    """An initial weight (scale, sigma or value): it must fit the float32 weights."""
    return Real(low, FLOAT32_MAX)


def _count() -> Integer:
    return Integer(1, INT32_MAX)


@dataclass(frozen=True)
class FMHyperparameters(Hyperparameters):
    feature_dim: int = hp(_count(), doc="number of features (dense length or sparse shape)")
    num_factors: int = hp(_count(), doc="dimension of the factor vectors")
    predictor_type: str = hp(Choice("binary_classifier", "regressor"), doc="log loss or squared loss")
    bias_init_method: str = hp(Choice(*INIT_METHODS), "normal")
    bias_init_scale: float | None = hp(_init(), None, "uniform init: U[-scale, scale]")
    bias_init_sigma: float = hp(_init(), 0.01, "normal init: N(0, sigma^2)")
    bias_init_value: float | None = hp(_init(-FLOAT32_MAX), None, "constant init value")
    bias_lr: float = hp(Real(0), 0.1)
    bias_wd: float = hp(Real(0), 0.01)
    clip_gradient: float | None = hp(_positive(), None, "clip each gradient into [-c, c]; none when absent")
    epochs: int = hp(_count(), 1, "passes over the training data")
    eps: float | None = hp(_positive(), None, "Adam's epsilon; 1e-8 when absent")
    factors_init_method: str = hp(Choice(*INIT_METHODS), "normal")
    factors_init_scale: float | None = hp(_init(), None)
    factors_init_sigma: float = hp(_init(), 0.001)
    factors_init_value: float | None = hp(_init(-FLOAT32_MAX), None)
    factors_lr: float = hp(Real(0), 0.0001)
    factors_wd: float = hp(Real(0), 0.00001)
    linear_lr: float = hp(Real(0), 0.001)
    linear_init_method: str = hp(Choice(*INIT_METHODS), "normal")
    linear_init_scale: float | None = hp(_init(), None)
    linear_init_sigma: float = hp(_init(), 0.01)
    linear_init_value: float | None = hp(_init(-FLOAT32_MAX), None)
    linear_wd: float = hp(Real(0), 0.001)
    mini_batch_size: int = hp(_count(), 1000, "rows per gradient step")
    rescale_grad: float | None = hp(_positive(), None, "gradient multiplier; 1/rows of the mini-batch when absent")

    hints: ClassVar[dict[str, str]] = {
        "k": "num_factors",
        "rank": "num_factors",
        "n_factors": "num_factors",
        "batch_size": "mini_batch_size",
        "num_epochs": "epochs",
        "epoch": "epochs",
        "learning_rate": "factors_lr",
        "lr": "factors_lr",
    }

    def check(self) -> list[str]:
        problems = []
        for group in GROUPS:
            method = getattr(self, f"{group}_init_method")
            if method == "uniform" and getattr(self, f"{group}_init_scale") is None:
                problems.append(f"{group}_init_method is 'uniform' but {group}_init_scale is not set; "
                                f"give {group}_init_scale")
            if method == "constant" and getattr(self, f"{group}_init_value") is None:
                problems.append(f"{group}_init_method is 'constant' but {group}_init_value is not set; "
                                f"give {group}_init_value")
        return problems

    @property
    def is_classifier(self) -> bool:
        return self.predictor_type == "binary_classifier"

    @property
    def adam_eps(self) -> float:
        return DEFAULT_EPS if self.eps is None else self.eps
