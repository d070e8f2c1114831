"""SageMaker k-NN: reservoir-sampled points in a FAISS index, classifier or regressor."""

from algorithms.knn.algorithm import Knn as ALGORITHM

__all__ = ["ALGORITHM"]
