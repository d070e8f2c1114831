"""Numba kernels: reservoir sampling, random cut tree building, node boxes, scores and attributions.

A forest is flat arrays over all trees' nodes (global indices):
  cut_dim[n]    int32, -1 for a leaf
  cut_value[n]  float64; a point goes left when x[cut_dim] <= cut_value
  left[n], right[n]  int32 child indices (-1 for a leaf); children always come after their parent
  mass[n]       int32, points under the node (a leaf's mass counts identical points)
  leaf_point[n] int32 row of `points` for a leaf, -1 otherwise
Tree t's root is node roots[t]. Boxes (box_min/box_max per node and feature) are derived from
the points at load time and are not stored.

Scores follow the random-cut-forest-by-aws scalar score (docs/images/rcf.md, "Scores"): from the leaf the
query reaches, back to the root, each ancestor at depth δ mixes in 1/(δ+1) with the probability
that a random cut of (box ∪ query) separates the query; the tree's score is multiplied by
log2(tree mass + 1) and the forest's score is the mean over trees.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from common.data.jit import numba

BLOCK = 64  # rows scored together, tree after tree


@numba.njit(cache=True, nogil=True)
def reservoir_update(reservoir, seen, x, uniforms):
    """Algorithm R over the rows of `x`: row t (0-based over the stream) fills slot t while the
    reservoir is not full, later replaces slot floor(u·(t+1)) when that is < capacity.
    Returns the rows seen after this batch. Every row ends in the reservoir with probability
    capacity / rows seen."""
    capacity = reservoir.shape[0]
    for i in range(x.shape[0]):
        t = seen + i
        if t < capacity:
            slot = t
        else:
            slot = int(uniforms[i] * (t + 1))
            if slot >= capacity:
                continue
        for j in range(x.shape[1]):
            reservoir[slot, j] = x[i, j]
    return seen + x.shape[0]


@numba.njit(cache=True, nogil=True)
def build_tree(x, uniforms, cut_dim, cut_value, left, right, mass, leaf_point, points):
    """A random cut tree over the rows of `x` (float32, (s, d)), written into the node arrays
    (at least 2s - 1 long) and `points` (at least s rows). `uniforms` is (s, 2) in [0, 1).
    Returns (nodes used, leaves used, depth)."""
    s, d = x.shape
    order = np.arange(s)
    stack_start = np.empty(2 * s, np.int64)
    stack_end = np.empty(2 * s, np.int64)
    stack_node = np.empty(2 * s, np.int64)
    stack_depth = np.empty(2 * s, np.int64)
    lo = np.empty(d, np.float32)
    hi = np.empty(d, np.float32)
    top = 0
    stack_start[0], stack_end[0], stack_node[0], stack_depth[0] = 0, s, 0, 0
    nodes, leaves, cuts, max_depth = 1, 0, 0, 0
    while top >= 0:
        start, end, node, depth = stack_start[top], stack_end[top], stack_node[top], stack_depth[top]
        top -= 1
        max_depth = max(max_depth, depth)
        first = order[start]
        for j in range(d):
            lo[j] = x[first, j]
            hi[j] = x[first, j]
        for k in range(start + 1, end):
            row = order[k]
            for j in range(d):
                v = x[row, j]
                if v < lo[j]:
                    lo[j] = v
                elif v > hi[j]:
                    hi[j] = v
        total = 0.0
        for j in range(d):
            total += np.float64(hi[j]) - np.float64(lo[j])
        mass[node] = end - start
        if total == 0.0:  # every point here is the same: one leaf carries them all
            cut_dim[node], cut_value[node], left[node], right[node] = -1, 0.0, -1, -1
            leaf_point[node] = leaves
            for j in range(d):
                points[leaves, j] = x[first, j]
            leaves += 1
            continue
        target = uniforms[cuts, 0] * total
        dim, running = -1, 0.0
        for j in range(d):
            width = np.float64(hi[j]) - np.float64(lo[j])
            if width > 0.0:
                dim = j
                running += width
                if running > target:
                    break
        low, high = np.float64(lo[dim]), np.float64(hi[dim])
        value = low + uniforms[cuts, 1] * (high - low)
        if value >= high:  # rounding: keep low <= value < high so both sides are non-empty
            value = low
        cuts += 1
        # Partition order[start:end]: x[dim] <= value first.
        i, k = start, end - 1
        while i <= k:
            if x[order[i], dim] <= value:
                i += 1
            else:
                order[i], order[k] = order[k], order[i]
                k -= 1
        cut_dim[node], cut_value[node], leaf_point[node] = dim, value, -1
        left[node], right[node] = nodes, nodes + 1
        nodes += 2
        top += 1
        stack_start[top], stack_end[top], stack_node[top], stack_depth[top] = i, end, right[node], depth + 1
        top += 1
        stack_start[top], stack_end[top], stack_node[top], stack_depth[top] = start, i, left[node], depth + 1
    return nodes, leaves, max_depth


@numba.njit(cache=True, nogil=True)
def node_boxes(cut_dim, left, right, leaf_point, points, box_min, box_max):
    """Each node's bounding box from its leaves, children first (they have larger indices)."""
    for node in range(cut_dim.shape[0] - 1, -1, -1):
        if cut_dim[node] < 0:
            p = leaf_point[node]
            for j in range(points.shape[1]):
                box_min[node, j] = points[p, j]
                box_max[node, j] = points[p, j]
        else:
            a, b = left[node], right[node]
            for j in range(points.shape[1]):
                box_min[node, j] = min(box_min[a, j], box_min[b, j])
                box_max[node, j] = max(box_max[a, j], box_max[b, j])


@numba.njit(cache=True, nogil=True)
def _descend(q, root, cut_dim, cut_value, left, right, path):
    """Fills `path` with the nodes from the root to the query's leaf; returns the leaf's depth."""
    node, depth = root, 0
    path[0] = root
    while cut_dim[node] >= 0:
        node = left[node] if q[cut_dim[node]] <= cut_value[node] else right[node]
        depth += 1
        path[depth] = node
    return depth


@numba.njit(cache=True, nogil=True)
def _same_point(q, points, p):
    for j in range(q.shape[0]):
        if q[j] != points[p, j]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _tree_score(q, root, tree_mass, cut_dim, cut_value, left, right, mass, leaf_point, points,
                box_min, box_max, path):
    depth = _descend(q, root, cut_dim, cut_value, left, right, path)
    leaf = path[depth]
    if _same_point(q, points, leaf_point[leaf]):
        m = mass[leaf]
        return (1.0 - m / (2.0 * tree_mass)) / (depth + math.log2(m + 1.0))
    score = 1.0 / (depth + 1.0)
    for level in range(depth - 1, -1, -1):
        node = path[level]
        grow, span = 0.0, 0.0
        for j in range(q.shape[0]):
            v, a, b = np.float64(q[j]), np.float64(box_min[node, j]), np.float64(box_max[node, j])
            if v < a:
                grow += a - v
                span += b - v
            elif v > b:
                grow += v - b
                span += v - a
            else:
                span += b - a
        if grow == 0.0:
            break
        p = grow / span
        score = p / (level + 1.0) + (1.0 - p) * score
    return score


@numba.njit(cache=True, nogil=True, parallel=True)
def score_rows(x, roots, tree_mass, max_depth, cut_dim, cut_value, left, right, mass, leaf_point,
               points, box_min, box_max, out):
    """Forest score of every row of `x` (float32 (n, d)) into `out` (float64 (n,))."""
    normalizer = math.log2(tree_mass + 1.0) / roots.shape[0]
    n = x.shape[0]
    blocks = (n + BLOCK - 1) // BLOCK
    for b in prange(blocks):  # tree by tree over a block of rows: each tree stays in cache
        path = np.empty(max_depth + 1, np.int64)
        start, stop = b * BLOCK, min(n, (b + 1) * BLOCK)
        for i in range(start, stop):
            out[i] = 0.0
        for t in range(roots.shape[0]):
            for i in range(start, stop):
                out[i] += _tree_score(x[i], roots[t], tree_mass, cut_dim, cut_value, left, right, mass,
                                      leaf_point, points, box_min, box_max, path)
        for i in range(start, stop):
            out[i] *= normalizer


@numba.njit(cache=True, nogil=True, parallel=True)
def attribute_rows(x, roots, tree_mass, max_depth, cut_dim, cut_value, left, right, mass, leaf_point,
                   points, box_min, box_max, high, low):
    """Per-feature attribution of every row's score, as random-cut-forest-by-aws's DiVector: `high`
    (query above the box) and `low` (below), each (n, d). Each ancestor's share p/(δ+1) is split over
    features in proportion to how far the query sticks out of the box along them; the scores of
    identical points (the leaf holds the query) are split evenly. high + low sums to the score."""
    n, d = x.shape
    normalizer = math.log2(tree_mass + 1.0) / roots.shape[0]
    for i in prange(n):
        path = np.empty(max_depth + 1, np.int64)
        hi_tree = np.empty(d)
        lo_tree = np.empty(d)
        q = x[i]
        for t in range(roots.shape[0]):
            depth = _descend(q, roots[t], cut_dim, cut_value, left, right, path)
            leaf = path[depth]
            p_leaf = leaf_point[leaf]
            if _same_point(q, points, p_leaf):
                m = mass[leaf]
                share = (1.0 - m / (2.0 * tree_mass)) / (depth + math.log2(m + 1.0)) / (2.0 * d)
                for j in range(d):
                    high[i, j] += share * normalizer
                    low[i, j] += share * normalizer
                continue
            gap = 0.0
            for j in range(d):
                gap += abs(np.float64(q[j]) - np.float64(points[p_leaf, j]))
            unseen = 1.0 / (depth + 1.0)
            for j in range(d):
                diff = np.float64(q[j]) - np.float64(points[p_leaf, j])
                hi_tree[j] = unseen * diff / gap if diff > 0 else 0.0
                lo_tree[j] = -unseen * diff / gap if diff < 0 else 0.0
            for level in range(depth - 1, -1, -1):
                node = path[level]
                grow, span = 0.0, 0.0
                for j in range(d):
                    v, a, b = np.float64(q[j]), np.float64(box_min[node, j]), np.float64(box_max[node, j])
                    span += max(b, v) - min(a, v)
                    grow += max(a - v, 0.0) + max(v - b, 0.0)
                if grow == 0.0:
                    break
                p = grow / span
                weight = 1.0 / ((level + 1.0) * span)
                for j in range(d):
                    v, a, b = np.float64(q[j]), np.float64(box_min[node, j]), np.float64(box_max[node, j])
                    hi_tree[j] = max(v - b, 0.0) * weight + (1.0 - p) * hi_tree[j]
                    lo_tree[j] = max(a - v, 0.0) * weight + (1.0 - p) * lo_tree[j]
            for j in range(d):
                high[i, j] += hi_tree[j] * normalizer
                low[i, j] += lo_tree[j] * normalizer


@numba.njit(cache=True, nogil=True)
def checked_depth(roots, cut_dim, left, right, leaf_point, n_points):
    """The deepest leaf's depth, or -1 when the arrays do not form trees (a child before its parent
    or out of range, a leaf without a point): the scoring kernels trust these arrays."""
    nodes = cut_dim.shape[0]
    depth = np.full(nodes, -1, np.int64)
    for t in range(roots.shape[0]):
        if roots[t] < 0 or roots[t] >= nodes:
            return -1
        depth[roots[t]] = 0
    deepest = 0
    for node in range(nodes):
        if depth[node] < 0:
            return -1
        deepest = max(deepest, depth[node])
        if cut_dim[node] < 0:
            if leaf_point[node] < 0 or leaf_point[node] >= n_points:
                return -1
            continue
        for child in (left[node], right[node]):
            if child <= node or child >= nodes or depth[child] >= 0:
                return -1
            depth[child] = depth[node] + 1
    return deepest
