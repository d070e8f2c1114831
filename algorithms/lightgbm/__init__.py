"""SageMaker (JumpStart) LightGBM: classification and regression on tabular CSV, LightGBM's own network."""

from algorithms.lightgbm.algorithm import LightGBM as ALGORITHM

__all__ = ["ALGORITHM"]
