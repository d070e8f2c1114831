"""SageMaker k-means: web-scale mini-batch k-means with a local Lloyd reduction."""

from algorithms.kmeans.algorithm import KMeans as ALGORITHM

__all__ = ["ALGORITHM"]
