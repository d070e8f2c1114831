"""PCA numerics: streamed scatter sums (regular), gram products and Nyström (randomized), eigenpairs.

Every accumulator is float64 whatever the input. scipy is imported inside the functions so
serving a model, which needs none of this, starts without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import numpy as np

from common.data.batch import Features, issparse

# Below this fraction of non-zeros a sparse block's scatter is built sparse; above it, densified.
SPARSE_DENSITY = 0.05
# Symmetric eigenproblems up to this size are solved on one BLAS thread (see one_thread).
SMALL_EIGH = 1024


@contextmanager
def one_thread() -> Iterator[None]:
    """Run small factorisations on one BLAS thread. Their many small steps each synchronise the threads,
    which on a busy machine costs more than the arithmetic: a 2000 x 60 QR takes 5-20 ms on one thread
    and 0.1-1.4 s on two threads of a loaded 2-core machine. Large products keep every thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


class ScatterSums:
    """Σ xᵀx (upper triangle only, Fortran order so BLAS syrk updates it in place), Σ x and the row count."""

    def __init__(self, feature_dim: int) -> None:
        self.scatter = np.zeros((feature_dim, feature_dim), order="F")
        self.total = np.zeros(feature_dim)
        self.rows = 0

    def add(self, features: Features) -> None:
        if issparse(features) and _density(features) < SPARSE_DENSITY:
            self._add_sparse(features)
            return
        x = features.toarray() if issparse(features) else features
        from scipy.linalg.blas import dsyrk

        x64 = np.asarray(x, dtype=np.float64, order="C")
        # x64.T is a Fortran-ordered (d, b) view: syrk computes x64ᵀ x64 with no copy of the block.
        self.scatter = dsyrk(1.0, x64.T, beta=1.0, c=self.scatter, trans=0, lower=0, overwrite_c=1)
        self.total += x64.sum(axis=0)
        self.rows += x64.shape[0]

    def _add_sparse(self, features: Features) -> None:
        x64 = features.astype(np.float64)
        product = (x64.T @ x64).tocsr()
        product.sum_duplicates()
        coo = product.tocoo()
        upper = coo.row <= coo.col
        self.scatter[coo.row[upper], coo.col[upper]] += coo.data[upper]  # (row, col) pairs are unique
        self.total += np.asarray(x64.sum(axis=0)).ravel()
        self.rows += x64.shape[0]

    def packed(self) -> np.ndarray:
        """One float64 vector (scatter, total, rows) for a single allreduce."""
        return np.concatenate([self.scatter.ravel(order="F"), self.total, [float(self.rows)]])

    @staticmethod
    def unpack(packed: np.ndarray, feature_dim: int) -> tuple[np.ndarray, np.ndarray, int]:
        size = feature_dim * feature_dim
        scatter = packed[:size].reshape((feature_dim, feature_dim), order="F")
        return scatter, packed[size:size + feature_dim], int(round(packed[-1]))


def _density(features: Features) -> float:
    rows, cols = features.shape
    return features.nnz / max(rows * cols, 1)


def column_sums(features: Features) -> np.ndarray:
    return np.asarray(features.sum(axis=0, dtype=np.float64)).ravel()


def gram_product(features: Features, basis: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """Σ over the block's rows of (x − shift)ᵀ (x − shift) basis, as float64 (d, K).

    The products run in `basis`'s precision (float32 or float64); `shift` None means no shift.
    Dense blocks are shifted explicitly; sparse ones keep their zeros and get the algebraic correction.
    """
    dtype = basis.dtype
    if issparse(features):
        x = features.astype(dtype)
        z = np.asarray(x.T @ (x @ basis), dtype=np.float64)
        if shift is not None:
            basis64 = basis.astype(np.float64)
            total = column_sums(features)
            shift_basis = shift @ basis64
            z -= np.outer(total, shift_basis) + np.outer(shift, total @ basis64)
            z += features.shape[0] * np.outer(shift, shift_basis)
        return z
    x = np.asarray(features, dtype=dtype)
    if shift is not None:
        x = x - shift.astype(dtype) if x is features else np.subtract(x, shift, out=x)  # x is a copy: reuse it
    return (x.T @ (x @ basis)).astype(np.float64)


def orthonormal_basis(z: np.ndarray) -> np.ndarray:
    with one_thread():
        q, _ = np.linalg.qr(z)
    return q


def start_basis(feature_dim: int, sketch: int, seed: int) -> np.ndarray:
    """An orthonormalised Gaussian test matrix (d, K); the same on every host for the same seed."""
    return orthonormal_basis(np.random.default_rng(seed).standard_normal((feature_dim, sketch)))


def top_eigenpairs(scatter: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (ascending) and eigenvectors of a symmetric matrix given by its upper triangle."""
    from scipy.linalg import eigh

    d = scatter.shape[0]
    with one_thread() if d <= SMALL_EIGH else nullcontext():
        values, vectors = eigh(scatter, lower=False, subset_by_index=[d - k, d - 1], check_finite=False)
    return values, vectors


def nystrom_eigenpairs(basis: np.ndarray, z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenpairs (ascending) of the PSD matrix A seen through Z = A·basis (basis orthonormal).

    The stabilised Nyström approximation A ≈ Z (basisᵀZ)⁻¹ Zᵀ (Tropp, Yurtsever, Udell and Cevher 2017,
    Algorithm 3): a small shift ν keeps the Cholesky factorisation defined when A has low rank.
    """
    with one_thread():
        return _nystrom(basis, z, k)


def _nystrom(basis: np.ndarray, z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.linalg import LinAlgError, cholesky, eigh, solve_triangular, svd

    nu = np.sqrt(z.shape[0]) * np.finfo(np.float64).eps * np.linalg.norm(z)
    y = z + nu * basis
    core = basis.T @ y
    try:
        lower = cholesky((core + core.T) / 2, lower=True, check_finite=False)
    except LinAlgError:  # numerically indefinite: fall back to Rayleigh–Ritz on the basis
        small = basis.T @ z
        values, vectors = eigh((small + small.T) / 2, check_finite=False)
        return np.maximum(values[-k:], 0.0), basis @ vectors[:, -k:]
    factor = solve_triangular(lower, y.T, lower=True, check_finite=False).T  # y · lower⁻ᵀ
    left, singular, _ = svd(factor, full_matrices=False, check_finite=False)
    values = np.maximum(singular[:k] ** 2 - nu, 0.0)
    return values[::-1].copy(), left[:, :k][:, ::-1].copy()


def orient(vectors: np.ndarray) -> np.ndarray:
    """Each column's largest-magnitude entry made positive (scikit-learn's svd_flip convention for V)."""
    largest = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[largest, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs
