"""SageMaker Random Cut Forest: reservoir-sampled random cut trees and their anomaly scores."""

from algorithms.rcf.algorithm import RandomCutForest as ALGORITHM

__all__ = ["ALGORITHM"]
