"""k-NN hyperparameters, as the SDK 2.x KNN estimator sends them; counts end at INT32_MAX (FAISS's int)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from common.constraints import INT32_MAX, AutoOr, Choice, Constraint, Integer
from common.hyperparameters import Hyperparameters, hp

log = logging.getLogger(__name__)

COUNT = Integer(1, INT32_MAX)
FLAT, IVFFLAT, IVFPQ = "faiss.Flat", "faiss.IVFFlat", "faiss.IVFPQ"
L2, INNER_PRODUCT, COSINE = "L2", "INNER_PRODUCT", "COSINE"
PQ_M_VALUES = (1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96)


class IntegerIn(Constraint):
    """An integer from a fixed set, e.g. the sub-quantizer counts FAISS's PQ codes allow."""

    def __init__(self, values: tuple[int, ...]) -> None:
        self.values = values
        self._integer = Integer()

    def parse(self, text: str) -> int:
        value = self._integer.parse(text)
        if value not in self.values:
            raise ValueError
        return value

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.values))

    def invalid_examples(self) -> list[str]:
        missing = next(v for v in range(1, max(self.values)) if v not in self.values)
        return ["abc", "", "0", str(missing), str(max(self.values) + 1)]

    def to_json(self) -> dict:
        return {"type": "choice", "allowed": list(self.values)}


@dataclass(frozen=True)
class KnnHyperparameters(Hyperparameters):
    feature_dim: int = hp(COUNT, doc="number of features")
    k: int = hp(COUNT, doc="neighbours per query")
    predictor_type: str = hp(Choice("classifier", "regressor"), doc="majority vote or mean of the k labels")
    sample_size: int = hp(COUNT, doc="points kept in the index, across all hosts")
    dimension_reduction_type: str | None = hp(Choice("sign", "fjlt"), None, "random projection before indexing")
    dimension_reduction_target: int | None = hp(COUNT, None, "dimension after the projection")
    index_type: str = hp(Choice(FLAT, IVFFLAT, IVFPQ), FLAT)
    index_metric: str = hp(Choice(L2, INNER_PRODUCT, COSINE), L2)
    faiss_index_ivf_nlists: int | str = hp(AutoOr(COUNT), "auto", "IVF cells; auto = sqrt(sample_size)")
    faiss_index_pq_m: int | None = hp(IntegerIn(PQ_M_VALUES), None, "PQ sub-quantizers; default from dimension")
    mini_batch_size: int = hp(COUNT, 5000, "rows read per batch")

    # The SDK's Python argument names are the wire names; these catch other habits.
    hints: ClassVar[dict[str, str]] = {
        "n_neighbors": "k",
        "metric": "index_metric",
        "nlist": "faiss_index_ivf_nlists",
        "m": "faiss_index_pq_m",
    }

    def check(self) -> list[str]:
        problems = []
        if self.dimension_reduction_type is not None and self.dimension_reduction_target is None:
            problems.append("Hyperparameter 'dimension_reduction_target' is required when "
                            "'dimension_reduction_type' is set")
        if self.dimension_reduction_target is not None:
            if self.dimension_reduction_type is None:
                log.warning("dimension_reduction_target=%d is ignored: dimension_reduction_type is not set.",
                            self.dimension_reduction_target)
            elif self.dimension_reduction_target >= self.feature_dim:
                problems.append(f"Hyperparameter 'dimension_reduction_target' has invalid value "
                                f"'{self.dimension_reduction_target}': must be less than feature_dim "
                                f"({self.feature_dim})")
        if self.index_type == IVFPQ and self.index_metric != L2:
            problems.append(f"Hyperparameter 'index_metric' has value '{self.index_metric}', which index_type "
                            f"'{IVFPQ}' does not support; use 'L2', or index_type '{FLAT}' or '{IVFFLAT}'")
        if self.k > self.sample_size:
            problems.append(f"Hyperparameter 'k' has invalid value '{self.k}': must be at most sample_size "
                            f"({self.sample_size})")
        return problems

    @property
    def reduction_target(self) -> int | None:
        """The projection's output dimension, or None without dimension reduction."""
        return self.dimension_reduction_target if self.dimension_reduction_type else None
