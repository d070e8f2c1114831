"""Factorization machines hyperparameters (spec fm.md §2), as the SDK 2.x FactorizationMachines estimator sends them.

Optional floats the guide gives no default (the init scale/value, clip_gradient, eps, rescale_grad) are None
when absent. Following the spec's recommendations: `uniform` needs `*_init_scale`, `constant` needs
`*_init_value`; eps defaults to 1e-8, rescale_grad to 1/rows of the mini-batch, no clipping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from common.constraints import Choice, Integer, Real
from common.hyperparameters import Hyperparameters, hp

GROUPS = ("bias", "linear", "factors")
INIT_METHODS = ("normal", "uniform", "constant")
DEFAULT_EPS = 1e-8


def _positive() -> Real:
    return Real(0, low_open=True)


@dataclass(frozen=True)
class FMHyperparameters(Hyperparameters):
    feature_dim: int = hp(Integer(1), doc="number of features (dense length or sparse shape)")
    num_factors: int = hp(Integer(1), doc="dimension of the factor vectors")
    predictor_type: str = hp(Choice("binary_classifier", "regressor"), doc="log loss or squared loss")
    bias_init_method: str = hp(Choice(*INIT_METHODS), "normal")
    bias_init_scale: float | None = hp(Real(0), None, "uniform init: U[-scale, scale]")
    bias_init_sigma: float = hp(Real(0), 0.01, "normal init: N(0, sigma^2)")
    bias_init_value: float | None = hp(Real(), None, "constant init value")
    bias_lr: float = hp(Real(0), 0.1)
    bias_wd: float = hp(Real(0), 0.01)
    clip_gradient: float | None = hp(_positive(), None, "clip each gradient into [-c, c]; none when absent")
    epochs: int = hp(Integer(1), 1, "passes over the training data")
    eps: float | None = hp(_positive(), None, "Adam's epsilon; 1e-8 when absent")
    factors_init_method: str = hp(Choice(*INIT_METHODS), "normal")
    factors_init_scale: float | None = hp(Real(0), None)
    factors_init_sigma: float = hp(Real(0), 0.001)
    factors_init_value: float | None = hp(Real(), None)
    factors_lr: float = hp(Real(0), 0.0001)
    factors_wd: float = hp(Real(0), 0.00001)
    linear_lr: float = hp(Real(0), 0.001)
    linear_init_method: str = hp(Choice(*INIT_METHODS), "normal")
    linear_init_scale: float | None = hp(Real(0), None)
    linear_init_sigma: float = hp(Real(0), 0.01)
    linear_init_value: float | None = hp(Real(), None)
    linear_wd: float = hp(Real(0), 0.001)
    mini_batch_size: int = hp(Integer(1), 1000, "rows per gradient step")
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
