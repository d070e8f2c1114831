"""The scikit-learn framework image: the user's own training script and inference module only."""

from algorithms.sklearn.algorithm import SKLearn as ALGORITHM

__all__ = ["ALGORITHM"]
