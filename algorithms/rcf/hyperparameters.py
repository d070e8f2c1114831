"""Random Cut Forest hyperparameters, as the SDK 2.x RandomCutForest estimator sends them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from common.constraints import INT32_MAX, Boolean, Choice, Integer, ListOf
from common.hyperparameters import Hyperparameters, hp

EVAL_METRICS = ("accuracy", "precision_recall_fscore")


class MetricList(ListOf):
    """A JSON or Python list, or the bare comma-separated text some user code sends
    (`accuracy,precision_recall_fscore`)."""

    def parse(self, text: str) -> tuple[Any, ...]:
        stripped = text.strip()
        if stripped and not stripped.startswith("["):
            stripped = "[" + stripped + "]"
        return super().parse(stripped)

    def describe(self) -> str:
        return super().describe() + " (a comma-separated list is accepted too)"


@dataclass(frozen=True)
class RCFHyperparameters(Hyperparameters):
    feature_dim: int = hp(Integer(1, 10000), doc="number of features")
    eval_metrics: tuple[str, ...] = hp(MetricList(Choice(*EVAL_METRICS)), EVAL_METRICS,
                                       "test metrics besides f1, which is always reported")
    num_samples_per_tree: int = hp(Integer(1, 2048), 256, "points sampled into each tree")
    num_trees: int = hp(Integer(50, 1000), 100, "trees in the forest")
    mini_batch_size: int = hp(Integer(1, INT32_MAX), 1000, "rows read at a time; the SDK always sends 1000")
    epochs: int = hp(Integer(1, INT32_MAX), 1, "accepted for the SDK; training is one pass")
    force_dense: bool = hp(Boolean(), True, "accepted for the SDK; sparse rows are densified")

    hints: ClassVar[dict[str, str]] = {
        "n_estimators": "num_trees",
        "trees": "num_trees",
        "sample_size": "num_samples_per_tree",
        "max_samples": "num_samples_per_tree",
        "tree_size": "num_samples_per_tree",
        "batch_size": "mini_batch_size",
    }
