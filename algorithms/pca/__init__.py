"""SageMaker PCA: regular (streamed covariance) and randomized (streamed range finder) modes."""

from algorithms.pca.algorithm import PCA as ALGORITHM

__all__ = ["ALGORITHM"]
