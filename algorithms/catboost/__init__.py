"""SageMaker (JumpStart) CatBoost: classification and regression on tabular CSV, one host."""

from algorithms.catboost.algorithm import CatBoost as ALGORITHM

__all__ = ["ALGORITHM"]
