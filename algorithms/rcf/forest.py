"""The forest: flat node arrays, building trees from samples, the artifact, scoring.

Artifact `model_algo-1` is a zip file readable with `numpy.load(path)` (no pickle) or any zip tool:
  metadata.json   {"format": "rcf-forest", "version": 1, "feature_dim", "num_trees",
                   "num_samples_per_tree", "num_samples_in_forest", "rows_seen", "max_depth"}
  roots.npy       int64 (num_trees,)       root node of each tree
  cut_dim.npy     int32 (nodes,)           -1 for a leaf
  cut_value.npy   float64 (nodes,)         a point goes left when x[cut_dim] <= cut_value
  left.npy, right.npy  int32 (nodes,)      children (-1 for a leaf); children follow their parent
  mass.npy        int32 (nodes,)           points under the node
  leaf_point.npy  int32 (nodes,)           row of points.npy for a leaf, -1 otherwise
  points.npy      float32 (leaves, feature_dim)  the distinct sample points of each leaf
Node bounding boxes are rebuilt from the points when the model loads (8 · feature_dim bytes a node).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.imports import LazyModule
from common.progress import Progress

kernels = LazyModule("algorithms.rcf.kernels")  # numba: loaded by the first call

FORMAT, VERSION = "rcf-forest", 1
ARRAYS = ("roots", "cut_dim", "cut_value", "left", "right", "mass", "leaf_point", "points")


@dataclass
class Trees:
    """Some trees of a forest, each with node indices local to the first of these trees."""

    roots: np.ndarray
    cut_dim: np.ndarray
    cut_value: np.ndarray
    left: np.ndarray
    right: np.ndarray
    mass: np.ndarray
    leaf_point: np.ndarray
    points: np.ndarray
    depths: np.ndarray

    @classmethod
    def build(cls, samples: list[np.ndarray], seeds: list[int], progress: Progress | None = None) -> Trees:
        """One tree per sample (float32 (s, d)), with its own random stream; `progress` advances per tree."""
        parts: list[tuple[np.ndarray, ...]] = []
        depths = []
        node_base, point_base = 0, 0
        roots = []
        for sample, seed in zip(samples, seeds):
            s, d = sample.shape
            size = 2 * s - 1
            cut_dim, left, right = np.empty(size, np.int32), np.empty(size, np.int32), np.empty(size, np.int32)
            cut_value, mass, leaf = np.empty(size), np.empty(size, np.int32), np.empty(size, np.int32)
            points = np.empty((s, d), np.float32)
            uniforms = np.random.default_rng(seed).random((s, 2))
            nodes, leaves, depth = kernels.build_tree(np.ascontiguousarray(sample, np.float32), uniforms, cut_dim,
                                                      cut_value, left, right, mass, leaf, points)
            inner = cut_dim[:nodes] >= 0
            parts.append((cut_dim[:nodes], cut_value[:nodes], np.where(inner, left[:nodes] + node_base, -1),
                          np.where(inner, right[:nodes] + node_base, -1), mass[:nodes],
                          np.where(inner, -1, leaf[:nodes] + point_base), points[:leaves]))
            roots.append(node_base)
            depths.append(depth)
            node_base += nodes
            point_base += leaves
            if progress is not None:
                progress.advance()
        columns = list(zip(*parts)) if parts else [[] for _ in range(7)]
        dtypes = (np.int32, np.float64, np.int32, np.int32, np.int32, np.int32, np.float32)
        arrays = [np.concatenate(c).astype(t) if len(c) else np.empty(0, t) for c, t in zip(columns, dtypes)]
        return cls(np.array(roots, np.int64), *arrays, np.array(depths, np.int64))

    @staticmethod
    def join(groups: list[Trees]) -> Trees:
        """Trees of several groups as one, node and point indices shifted."""
        node_base, point_base = 0, 0
        shifted = []
        for g in groups:
            inner = g.cut_dim >= 0
            shifted.append(Trees(g.roots + node_base, g.cut_dim, g.cut_value,
                                 np.where(inner, g.left + node_base, -1), np.where(inner, g.right + node_base, -1),
                                 g.mass, np.where(inner, -1, g.leaf_point + point_base), g.points, g.depths))
            node_base += len(g.cut_dim)
            point_base += len(g.points)
        fields = ("roots", "cut_dim", "cut_value", "left", "right", "mass", "leaf_point", "points", "depths")
        return Trees(*[np.concatenate([getattr(g, f) for g in shifted]) for f in fields])


class Forest:
    """A built forest, with node boxes, ready to score."""

    def __init__(self, trees: Trees, metadata: dict) -> None:
        self.trees = trees
        self.metadata = metadata
        self.feature_dim = int(metadata["feature_dim"])
        self.tree_mass = float(metadata["num_samples_per_tree"])
        self.max_depth = kernels.checked_depth(trees.roots, trees.cut_dim, trees.left, trees.right,
                                               trees.leaf_point, len(trees.points))
        if self.max_depth < 0 or trees.points.shape[1:] != (self.feature_dim,) or (
                len(trees.cut_dim) and trees.cut_dim.max() >= self.feature_dim):
            raise UserError("The RCF model's tree arrays are inconsistent; the model file is damaged.")
        nodes = len(trees.cut_dim)
        self.box_min = np.empty((nodes, self.feature_dim), np.float32)
        self.box_max = np.empty((nodes, self.feature_dim), np.float32)
        kernels.node_boxes(trees.cut_dim, trees.left, trees.right, trees.leaf_point, trees.points,
                           self.box_min, self.box_max)

    @property
    def num_trees(self) -> int:
        return len(self.trees.roots)

    def _kernel_args(self) -> tuple:
        t = self.trees
        return (t.roots, self.tree_mass, self.max_depth, t.cut_dim, t.cut_value, t.left, t.right, t.mass,
                t.leaf_point, t.points, self.box_min, self.box_max)

    def score(self, x: np.ndarray) -> np.ndarray:
        """float64 scores of float32 rows (n, feature_dim)."""
        out = np.empty(len(x))
        kernels.score_rows(np.ascontiguousarray(x, np.float32), *self._kernel_args(), out)
        return out

    def attribution(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(high, low) per feature, each (n, feature_dim); high + low sums to the score."""
        high = np.zeros(x.shape)
        low = np.zeros(x.shape)
        kernels.attribute_rows(np.ascontiguousarray(x, np.float32), *self._kernel_args(), high, low)
        return high, low

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self.trees, name) for name in ARRAYS}

    def save(self, path: Path) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("metadata.json", json.dumps({"format": FORMAT, "version": VERSION, **self.metadata}))
            for name, array in self.arrays().items():
                with archive.open(f"{name}.npy", "w") as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> Forest:
        try:
            with zipfile.ZipFile(path) as archive:
                metadata = json.loads(archive.read("metadata.json"))
                if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
                    raise UserError(f"{path.name} is not an RCF model of format {FORMAT} version {VERSION}.")
                arrays = {}
                for name in ARRAYS:
                    with archive.open(f"{name}.npy") as member:
                        arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise UserError(f"{path.name} is not a readable RCF model ({exc}).") from None
        dtypes = {"roots": np.int64, "cut_value": np.float64, "points": np.float32}
        lengths = {len(arrays[name]) for name in ("cut_dim", "cut_value", "left", "right", "mass", "leaf_point")}
        if len(lengths) != 1 or arrays["points"].ndim != 2:
            raise UserError(f"{path.name} has node arrays of different lengths; the model file is damaged.")
        typed = {name: np.ascontiguousarray(a, dtypes.get(name, np.int32)) for name, a in arrays.items()}
        return cls(Trees(**typed, depths=np.zeros(len(typed["roots"]), np.int64)), metadata)
