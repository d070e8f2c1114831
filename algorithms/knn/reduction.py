"""Seeded dimension reduction and the vector transform applied to stored points and queries alike.

`sign`: x @ S / sqrt(t) with S a d x t matrix of random signs (O(n d t)).
`fjlt`: the subsampled randomized Hadamard transform, a fast Johnson-Lindenstrauss transform:
zero-pad to a power of two m, flip signs at random, apply the orthonormal Walsh-Hadamard
transform (O(n m log m)), keep t random coordinates and scale by sqrt(m / t).
Both preserve L2 distances and inner products in expectation.

The metadata records only {type, seed, target_dim, input_dim}; the projection is regenerated
from the seed. Random bits come from PCG64's raw output, which numpy guarantees to be stable
across versions (its distribution methods are not), so a model projects queries the same way
wherever it is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SEED = 3
ROWS_PER_CHUNK = 4096


def _random_bits(seed: int, count: int) -> np.ndarray:
    """`count` random 0/1 values from PCG64's stable raw stream."""
    raw = np.random.PCG64(seed).random_raw((count + 63) // 64).astype("<u8")
    return np.unpackbits(raw.view(np.uint8), bitorder="little")[:count]


def _signs(bits: np.ndarray) -> np.ndarray:
    return (1.0 - 2.0 * bits).astype(np.float32)


def _power_of_two(at_least: int) -> int:
    return 1 << max(0, int(at_least - 1).bit_length())


@dataclass(frozen=True)
class Reduction:
    kind: str
    seed: int
    target_dim: int
    input_dim: int

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "seed": self.seed, "target_dim": self.target_dim, "input_dim": self.input_dim}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reduction:
        return cls(str(data["type"]), int(data["seed"]), int(data["target_dim"]), int(data["input_dim"]))

    def projector(self) -> _Projector:
        if self.kind == "sign":
            return _SignProjection(self)
        if self.kind == "fjlt":
            return _Fjlt(self)
        raise ValueError(f"unknown dimension reduction type {self.kind!r}")


class _Projector:
    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = [self.project(x[i:i + ROWS_PER_CHUNK]) for i in range(0, len(x), ROWS_PER_CHUNK)]
        return np.concatenate(out) if out else self.project(x)

    def project(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _SignProjection(_Projector):
    def __init__(self, spec: Reduction) -> None:
        d, t = spec.input_dim, spec.target_dim
        signs = _signs(_random_bits(spec.seed, d * t)).reshape(d, t)
        self.matrix = signs / np.float32(np.sqrt(t))

    def project(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x @ self.matrix, dtype=np.float32)


class _Fjlt(_Projector):
    def __init__(self, spec: Reduction) -> None:
        d, t = spec.input_dim, spec.target_dim
        self.size = _power_of_two(max(d, t))
        self.signs = _signs(_random_bits(spec.seed, d))
        # A random subset of t coordinates: the order of fresh random keys.
        keys = np.random.PCG64(spec.seed + 1).random_raw(self.size)
        self.keep = np.sort(np.argsort(keys, kind="stable")[:t])
        # Orthonormal H is H / sqrt(m); keeping t of m coordinates then scales by sqrt(m / t).
        self.scale = np.float32(1.0 / np.sqrt(t))
        self.input_dim = d

    def project(self, x: np.ndarray) -> np.ndarray:
        padded = np.zeros((len(x), self.size), np.float32)
        padded[:, : self.input_dim] = x * self.signs
        return walsh_hadamard(padded)[:, self.keep] * self.scale


def walsh_hadamard(x: np.ndarray) -> np.ndarray:
    """The unnormalised fast Walsh-Hadamard transform of each row (row length a power of two)."""
    n, m = x.shape
    y = x
    h = 1
    while h < m:
        blocks = y.reshape(n, m // (2 * h), 2, h)
        y = np.concatenate((blocks[:, :, :1] + blocks[:, :, 1:], blocks[:, :, :1] - blocks[:, :, 1:]), axis=2)
        h *= 2
    return y.reshape(n, m)


class Transform:
    """What every vector goes through before FAISS: projection, zero padding, L2 normalisation."""

    def __init__(self, input_dim: int, reduction: Reduction | None = None, padded_dim: int | None = None,
                 normalize: bool = False) -> None:
        self.input_dim = input_dim
        self.reduction = reduction
        self.padded_dim = padded_dim
        self.normalize = normalize
        self._projector = reduction.projector() if reduction else None

    @property
    def output_dim(self) -> int:
        if self.padded_dim is not None:
            return self.padded_dim
        return self.reduction.target_dim if self.reduction else self.input_dim

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self._projector is not None:
            x = self._projector(x)
        if self.padded_dim is not None and self.padded_dim > x.shape[1]:
            x = np.hstack([x, np.zeros((len(x), self.padded_dim - x.shape[1]), np.float32)])
        if self.normalize:
            norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)).astype(np.float32)
            x = x / np.where(norms > 0, norms, np.float32(1.0))[:, None]
        return np.ascontiguousarray(x, dtype=np.float32)
