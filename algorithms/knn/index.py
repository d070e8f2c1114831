"""The FAISS side: which index to build (factory string and its resolved parameters), build, search, files.

Resolved choices (docs/images/knn.md, "Index"; all recorded in the model's metadata):
- `faiss_index_ivf_nlists=auto` is round(sqrt(sample_size)), and never more than the points sampled.
- `faiss_index_pq_m` absent: the largest allowed value dividing the dimension with at least 4 dimensions per
  sub-quantizer (the plain "largest divisor" would give 1-dimensional sub-vectors at 64 dimensions, and
  FAISS's PQ training time grows with m: 64 sub-quantizers took 6x as long as 16 for a worse-compressed index).
- PQ codes have 8 bits, fewer only when fewer than 256 points were sampled (FAISS needs 2^bits points).
- PQ is built without polysemous training (`np`): index_factory's default reorders the codes for Hamming
  pre-filtering, which search does not use (polysemous_ht = 0) and which took 90 % of the build time.
- `nprobe`, the IVF cells searched per query, is round(sqrt(nlist)); users may edit it in the metadata. A query
  whose probed cells hold fewer than k points is searched again over every cell, so results are always k long.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from algorithms.knn.hyperparameters import FLAT, IVFFLAT, IVFPQ, L2, PQ_M_VALUES, KnnHyperparameters
from common.errors import UserError
from common.progress import Progress, duration

if TYPE_CHECKING:
    import faiss

# faiss is imported where it is used, not with this module: it logs as it loads, and `describe`
# (which imports the algorithm) must print nothing but its JSON on stdout.

log = logging.getLogger(__name__)

MIN_SUBVECTOR_DIM = 4
ADD_SLICE = 1 << 15  # vectors per index.add call, so that progress is logged between calls


@dataclass(frozen=True)
class IndexPlan:
    index_type: str
    index_metric: str
    dim: int
    nlist: int | None = None
    pq_m: int | None = None
    pq_bits: int | None = None
    nprobe: int | None = None

    @property
    def factory(self) -> str:
        """The `faiss.index_factory` description, e.g. `IVF316,PQ8x8np`."""
        if self.index_type == FLAT:
            return "Flat"
        if self.index_type == IVFFLAT:
            return f"IVF{self.nlist},Flat"
        return f"IVF{self.nlist},PQ{self.pq_m}x{self.pq_bits}np"

    @property
    def faiss_metric(self) -> int:
        import faiss

        return faiss.METRIC_L2 if self.index_metric == L2 else faiss.METRIC_INNER_PRODUCT

    def to_json(self) -> dict:
        described = {**asdict(self), "factory": self.factory}
        del described["nprobe"]  # recorded at the top level of the metadata, where users may edit it
        return described


def default_pq_m(dim: int) -> int:
    divisors = [m for m in PQ_M_VALUES if dim % m == 0]
    roomy = [m for m in divisors if dim // m >= MIN_SUBVECTOR_DIM]
    return max(roomy or divisors)


def pq_dimension(hp: KnnHyperparameters) -> tuple[int, int]:
    """(pq_m, dimension FAISS indexes): raised to a multiple of pq_m when it is not one, as AWS's guide describes."""
    dim = hp.reduction_target or hp.feature_dim
    m = hp.faiss_index_pq_m or default_pq_m(dim)
    if hp.faiss_index_pq_m is None:
        log.info("faiss_index_pq_m is not set; using %d for dimension %d.", m, dim)
    return m, math.ceil(dim / m) * m


def plan_index(hp: KnnHyperparameters, dim: int, points: int) -> IndexPlan:
    """The index for `points` sampled vectors of dimension `dim` (after reduction and padding)."""
    if hp.index_type == FLAT:
        return IndexPlan(FLAT, hp.index_metric, dim)
    wanted = hp.faiss_index_ivf_nlists
    nlist = max(1, round(math.sqrt(hp.sample_size))) if wanted == "auto" else int(wanted)
    if nlist > points:
        log.warning("faiss_index_ivf_nlists=%d is more than the %d points sampled; using %d.", nlist, points, points)
        nlist = points
    nprobe = default_nprobe(nlist)
    if hp.index_type == IVFFLAT:
        return IndexPlan(IVFFLAT, hp.index_metric, dim, nlist, nprobe=nprobe)
    if points < 2:
        raise UserError(f"index_type '{IVFPQ}' needs at least 2 training rows; the sample holds {points}.")
    bits = min(8, int(math.log2(points)))
    if bits < 8:
        log.warning("Only %d points were sampled; PQ codes get %d bits instead of 8.", points, bits)
    m, _ = pq_dimension(hp)
    return IndexPlan(IVFPQ, hp.index_metric, dim, nlist, m, bits, nprobe)


def default_nprobe(nlist: int) -> int:
    return max(1, round(math.sqrt(nlist)))


def plan_nprobe(faiss_index: faiss.Index) -> int | None:
    """The default nprobe of a loaded index (for metadata that does not record one), None if not IVF."""
    import faiss

    try:
        return default_nprobe(faiss.extract_index_ivf(faiss_index).nlist)
    except RuntimeError:
        return None


def stored_vectors(faiss_index: faiss.Index) -> np.ndarray | None:
    """The stored vectors (decoded PQ codes for IVFPQ), or None where FAISS cannot give them back."""
    import faiss

    try:
        try:
            faiss.extract_index_ivf(faiss_index).make_direct_map()
        except RuntimeError:
            pass  # not an IVF index
        return faiss_index.reconstruct_n(0, faiss_index.ntotal)
    except RuntimeError:
        return None


def build(vectors: np.ndarray, plan: IndexPlan) -> faiss.Index:
    """The index built by FAISS itself: index_factory, train (IVF/PQ), add."""
    import faiss

    index = faiss.index_factory(plan.dim, plan.factory, plan.faiss_metric)
    if not index.is_trained:
        started = time.perf_counter()
        index.train(vectors)
        log.info("Trained the %s index's quantizers on %s vectors in %s.", plan.factory, f"{len(vectors):,}",
                 duration(time.perf_counter() - started))
    # FAISS adds in slices of this size itself, so adding slice by slice builds the same index.
    progress = Progress("adding vectors to the index", len(vectors), "vectors")
    for start in range(0, len(vectors), ADD_SLICE):
        part = vectors[start:start + ADD_SLICE]
        index.add(part)
        progress.advance(len(part))
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int, nprobe: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Distances and ids (n, k), best first; thread-safe (search parameters are per call)."""
    import faiss

    if not nprobe:
        return index.search(queries, k)
    distances, ids = index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
    short = np.flatnonzero((ids < 0).any(axis=1))
    if short.size:
        nlist = faiss.extract_index_ivf(index).nlist
        every_cell = faiss.SearchParametersIVF(nprobe=nlist)
        distances[short], ids[short] = index.search(np.ascontiguousarray(queries[short]), k, params=every_cell)
    return distances, ids


def write(index: faiss.Index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def read(path: Path) -> faiss.Index:
    """The index with its vectors / inverted lists memory-mapped, so every server worker shares one copy."""
    import faiss

    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError as exc:
        log.warning("Cannot memory-map %s (%s); reading it into memory.", path.name, str(exc).splitlines()[0])
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise UserError(f"{path.name} is not a FAISS index FAISS {faiss.__version__} can read: "
                        f"{str(exc).splitlines()[0]}") from None


def to_bytes(index: faiss.Index) -> np.ndarray:
    import faiss

    return faiss.serialize_index(index)


def from_bytes(data: np.ndarray) -> faiss.Index:
    import faiss

    return faiss.deserialize_index(np.asarray(data, dtype=np.uint8))
