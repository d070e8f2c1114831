"""SageMaker factorization machines: binary classifier or regressor on sparse recordIO, numba kernels."""

from algorithms.fm.algorithm import FactorizationMachines as ALGORITHM

__all__ = ["ALGORITHM"]
