"""The two PCA fits as streamed passes over one host's rows, combined over hosts by allreduce.

`blocks(epoch)` yields this host's rows (dense float32 or CSR) for the `epoch`-th pass of this
run; File mode re-reads the files, Pipe mode opens the FIFO `<channel>_<epoch>`.

regular: one pass of Σ xᵀx, Σ x, n in float64 (memory O(d²)); C = Σ xᵀx − (Σ x)(Σ x)ᵀ / n; the
top eigenpairs of C give the components and the singular values s = √λ of the centered data.

randomized: subspace iteration on A = C with a K = num_components + extra column basis, one pass
per application of A (memory O(d·K)): pass 0 applies A to a seeded Gaussian basis, each of the
POWER_ITERATIONS further passes to the orthonormalised previous result, and the last product
gives the Nyström approximation whose eigenpairs are the answer. Passes before the last run in
float32: they only steer the basis, and after pass 0 (which learns the mean, and is centred by
C = XᵀX − n·meanᵀmean afterwards) each row is centred before the products; the last pass runs in
float64. The leader orthonormalises and broadcasts the basis, so every host applies the same one.
A sketch as wide as the data (K = feature_dim) is exact after the single pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from algorithms.pca import kernels
from common import stopping
from common.checkpoints import Checkpoints
from common.cluster.collective import Collective
from common.data.batch import Features
from common.errors import UserError
from common.progress import Progress

log = logging.getLogger(__name__)

Blocks = Callable[[int], Iterable[Features]]
POWER_ITERATIONS = 3
SEED = 0


@dataclass
class Fit:
    rows: int                      # training rows over all hosts
    rows_read: int                 # rows this host read, over all passes
    s: np.ndarray | None = None    # (k,) singular values, ascending; None except on the leader
    v: np.ndarray | None = None    # (d, k) components as columns, same order
    mean: np.ndarray | None = None  # (d,) when subtract_mean


def check_rows(rows: int, num_components: int) -> None:
    if rows == 0:
        raise UserError("The train channel holds no data rows.")
    if rows < num_components:
        raise UserError(f"num_components={num_components} is larger than the number of training rows ({rows}).")


def fit_regular(blocks: Blocks, feature_dim: int, num_components: int, subtract_mean: bool,
                collective: Collective, checkpoints: Checkpoints | None = None) -> Fit:
    """One pass of sums, checkpointed when `checkpoints.due()` (a minute on, or SIGTERM); a restarted job skips
    the rows it has summed."""
    sums = kernels.ScatterSums(feature_dim)
    state = ["regular", feature_dim, collective.rank, collective.world_size]
    _resume_sums(checkpoints, state, sums)
    progress = Progress("pass 1/1", start=sums.rows)
    with stopping.deferred():  # SIGTERM: checkpoint after the block, then stop
        for features in _after_rows(blocks(0), sums.rows):
            sums.add(features)
            progress.advance(features.shape[0])
            if checkpoints is not None and checkpoints.due():
                checkpoints.save(sums.rows, {"scatter": sums.scatter, "total": sums.total,
                                             "rows": np.array([sums.rows])},
                                 {"state": state}, progress=f"{sums.rows} rows of the one pass")
            stopping.check()
    progress.finish()
    local_rows = sums.rows
    scatter, total, rows = kernels.ScatterSums.unpack(collective.allreduce_sum(sums.packed()), feature_dim)
    check_rows(rows, num_components)
    if not collective.is_leader:
        return Fit(rows, local_rows)
    mean = total / rows if subtract_mean else None
    if mean is not None:
        scatter -= np.outer(total, mean)  # only the upper triangle is read
    values, vectors = kernels.top_eigenpairs(scatter, num_components)
    return Fit(rows, local_rows, np.sqrt(np.maximum(values, 0.0)), kernels.orient(vectors), mean)


def randomized_passes(feature_dim: int, sketch: int) -> int:
    """Passes over the data; a sketch as wide as the data spans everything, so A·basis is A itself."""
    return 1 if sketch >= feature_dim else 1 + POWER_ITERATIONS


def fit_randomized(blocks: Blocks, feature_dim: int, num_components: int, sketch: int, subtract_mean: bool,
                   collective: Collective, checkpoints: Checkpoints | None = None,
                   progress: Callable[[float], None] | None = None) -> Fit:
    passes = randomized_passes(feature_dim, sketch)
    state = [feature_dim, sketch, subtract_mean, passes, collective.world_size]
    done, basis, total, rows = _resume(checkpoints, state, collective)
    if basis is None:
        basis = kernels.start_basis(feature_dim, sketch, SEED)
    mean = total / rows if subtract_mean and rows else None
    rows_read, rows_per_pass = 0, None
    for step in range(done + 1, passes):
        pass_rows = Progress(f"pass {step + 1}/{passes}", rows_per_pass)
        last = step == passes - 1
        work = basis if last else basis.astype(np.float32)
        shift = mean if step > 0 else None
        z = np.zeros((feature_dim, sketch))
        local_total, local_rows = np.zeros(feature_dim), 0
        for features in blocks(step - done - 1):
            z += kernels.gram_product(features, work, shift)
            local_rows += features.shape[0]
            if step == 0:
                local_total += kernels.column_sums(features)
            pass_rows.advance(features.shape[0])
        rows_read += local_rows
        if step == 0:
            reduced = collective.allreduce_sum(np.concatenate([local_total, [float(local_rows)], z.ravel()]))
            total, rows = reduced[:feature_dim], int(round(reduced[feature_dim]))
            z = reduced[feature_dim + 1:].reshape(feature_dim, sketch)
            check_rows(rows, num_components)
            if subtract_mean:
                mean = total / rows
                z -= rows * np.outer(mean, mean @ basis)  # pass 0 ran unshifted
        else:
            z = collective.allreduce_sum(z)
        pass_rows.finish()
        rows_per_pass = pass_rows.done
        if progress is not None:
            progress(100.0 * (step + 1) / passes)
        if last:
            break
        basis = collective.broadcast(kernels.orthonormal_basis(z) if collective.is_leader else None, root=0)
        if checkpoints is not None:
            checkpoints.save(step, {"basis": basis, "total": total, "rows": np.array([rows])},
                             {"pass": step, "state": state}, progress=f"pass {step + 1} of {passes}")
    if not collective.is_leader:
        return Fit(rows, rows_read)
    values, vectors = kernels.nystrom_eigenpairs(basis, z, num_components)
    return Fit(rows, rows_read, np.sqrt(values), kernels.orient(vectors), mean)


def _resume_sums(checkpoints: Checkpoints | None, state: list, sums: kernels.ScatterSums) -> None:
    """`sums` from this host's checkpoint, if it has one."""
    latest = checkpoints.latest(state) if checkpoints is not None else None
    if latest is not None:
        arrays = latest[0]
        sums.scatter = np.asfortranarray(arrays["scatter"])
        sums.total, sums.rows = arrays["total"], int(arrays["rows"][0])
        log.info("Resuming from the checkpoint after %d rows of the pass.", sums.rows)


def _after_rows(blocks: Iterable[Features], skip: int) -> Iterator[Features]:
    """The rows after the first `skip`; checkpoints fall between blocks, so with the same blocks none is cut."""
    for features in blocks:
        if skip >= features.shape[0]:
            skip -= features.shape[0]
            continue
        yield features[skip:] if skip else features
        skip = 0


def _resume(checkpoints: Checkpoints | None, state: list, collective: Collective
            ) -> tuple[int, np.ndarray | None, np.ndarray | None, int]:
    """(last finished pass or -1, basis, column totals, rows) from a matching checkpoint on every host."""
    latest = checkpoints.latest(state) if checkpoints is not None else None
    done = int(latest[1]["pass"]) if latest else -1
    if collective.world_size > 1:
        agreed = collective.allreduce_min(np.array([done])), collective.allreduce_max(np.array([done]))
        if int(agreed[0][0]) != int(agreed[1][0]):
            log.warning("Hosts stopped after different passes; starting over.")
            done = -1
    if done < 0 or latest is None:
        return -1, None, None, 0
    arrays = latest[0]
    log.info("Resuming from the checkpoint after pass %d.", done)
    return done, arrays["basis"], arrays["total"], int(arrays["rows"][0])
