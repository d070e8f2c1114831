"""SageMaker XGBoost algorithm mode on xgboost-cpu."""

from algorithms.xgboost.algorithm import XGBoost as ALGORITHM

__all__ = ["ALGORITHM"]
