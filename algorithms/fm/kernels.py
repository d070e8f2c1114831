"""numba kernels: the FM equation and its Adam training step on CSR rows, O(nnz · num_factors) per row.

    ŷ(x) = w0 + Σ w_j x_j + ½ Σ_f [(Σ_j v_jf x_j)² − Σ_j v_jf² x_j²]

Parameters are float32 (w0 shape (1,), w shape (d,), V shape (d, k)); sums are float64. A mini-batch
step accumulates the gradient of the whole batch at fixed parameters, then applies MXNet's Adam update
to the touched rows only (MXNet's lazy update for sparse gradients):
    g = clip(rescale · grad, c) + wd · weight;  m = β1 m + (1−β1) g;  s = β2 s + (1−β2) g²
    weight −= lr · √(1−β2^t)/(1−β1^t) · m / (√s + eps)
"""

from __future__ import annotations

import numpy as np

from common.data.jit import numba

BETA1, BETA2 = 0.9, 0.999
# Layout of the `settings` float64 array passed to train_rows.
LR0, LRW, LRV, WD0, WDW, WDV, EPS, CLIP, RESCALE = range(9)
N_SETTINGS = 9


@numba.njit(cache=True, inline="always")
def _row(indptr, indices, data, r, w0, w, v, s):
    """ŷ of row r; leaves Σ_j v_jf x_j in s."""
    k = v.shape[1]
    for f in range(k):
        s[f] = 0.0
    linear = float(w0[0])
    squares = 0.0
    for p in range(indptr[r], indptr[r + 1]):
        j = indices[p]
        x = float(data[p])
        linear += w[j] * x
        for f in range(k):
            t = v[j, f] * x
            s[f] += t
            squares += t * t
    inter = 0.0
    for f in range(k):
        inter += s[f] * s[f]
    return linear + 0.5 * (inter - squares)


@numba.njit(cache=True)
def predict(indptr, indices, data, w0, w, v, out):
    """out[r] = ŷ of every row (the raw score; the classifier applies the sigmoid outside)."""
    s = np.empty(v.shape[1])
    for r in range(indptr.size - 1):
        out[r] = _row(indptr, indices, data, r, w0, w, v, s)


@numba.njit(cache=True, inline="always")
def _loss_and_slope(yhat, y, logistic):
    """Loss of one row and d loss / d ŷ (½ squared error, or log loss on the logit)."""
    if logistic:
        if yhat >= 0:
            z = np.exp(-yhat)
            p = 1.0 / (1.0 + z)
            loss = np.log1p(z) + (1.0 - y) * yhat
        else:
            z = np.exp(yhat)
            p = z / (1.0 + z)
            loss = np.log1p(z) - y * yhat
        return loss, p - y
    diff = yhat - y
    return diff * diff, diff


@numba.njit(cache=True)
def accumulate(indptr, indices, data, y, lo, hi, w0, w, v, scale, logistic, gw0, gw, gv, slot, features, n_touched, s):
    """Add scale · the gradient of rows lo..hi (of ½ squared error or log loss) to gw0/gw/gv.

    Gradients are compact: feature j's lives in row slot[j] of gw/gv (slot -1 = not touched yet;
    a new slot is zeroed, and features[slot] = j). Returns (sum of row losses, new n_touched).
    """
    k = v.shape[1]
    total = 0.0
    for r in range(lo, hi):
        yhat = _row(indptr, indices, data, r, w0, w, v, s)
        loss, slope = _loss_and_slope(yhat, float(y[r]), logistic)
        total += loss
        g = scale * slope
        gw0[0] += g
        for p in range(indptr[r], indptr[r + 1]):
            j = indices[p]
            x = float(data[p])
            i = slot[j]
            if i < 0:
                i = n_touched
                slot[j] = i
                features[i] = j
                n_touched += 1
                gw[i] = 0.0
                for f in range(k):
                    gv[i, f] = 0.0
            gw[i] += g * x
            for f in range(k):
                gv[i, f] += g * x * (s[f] - v[j, f] * x)
    return total, n_touched


@numba.njit(cache=True, inline="always")
def _adam(weight, grad, m, s, lr, wd, eps, clip):
    """One MXNet Adam update of one weight; lr already carries the bias correction."""
    if clip > 0.0:
        grad = min(max(grad, -clip), clip)
    grad += wd * weight
    m_new = BETA1 * m + (1.0 - BETA1) * grad
    s_new = BETA2 * s + (1.0 - BETA2) * grad * grad
    return weight - lr * m_new / (np.sqrt(s_new) + eps), m_new, s_new


@numba.njit(cache=True)
def train_rows(indptr, indices, data, y, batch_rows, logistic, w0, w, v, m0, s0, mw, sw, mv, sv,
               settings, step, gw, gv, slot, features):
    """Adam steps over every mini-batch of batch_rows rows, in order. Returns the sum of row losses.

    `step` (int64[1]) counts updates across calls, for the bias correction. gw (c,), gv (c, k) hold the
    gradients of the features one mini-batch touches (c ≥ its nnz); slot (d,) int64 is all −1 between calls.
    """
    n = indptr.size - 1
    k = v.shape[1]
    s = np.empty(k)
    gw0 = np.zeros(1)
    eps, clip, rescale = settings[EPS], settings[CLIP], settings[RESCALE]
    total = 0.0
    for lo in range(0, n, batch_rows):
        hi = min(lo + batch_rows, n)
        scale = rescale if rescale > 0.0 else 1.0 / (hi - lo)
        gw0[0] = 0.0
        loss, n_touched = accumulate(indptr, indices, data, y, lo, hi, w0, w, v, scale, logistic,
                                     gw0, gw, gv, slot, features, 0, s)
        total += loss
        step[0] += 1
        t = float(step[0])
        correction = np.sqrt(1.0 - BETA2 ** t) / (1.0 - BETA1 ** t)
        w0[0], m0[0], s0[0] = _adam(float(w0[0]), gw0[0], m0[0], s0[0], settings[LR0] * correction,
                                    settings[WD0], eps, clip)
        lrw, wdw = settings[LRW] * correction, settings[WDW]
        lrv, wdv = settings[LRV] * correction, settings[WDV]
        for i in range(n_touched):
            j = features[i]
            slot[j] = -1
            w[j], mw[j], sw[j] = _adam(float(w[j]), gw[i], mw[j], sw[j], lrw, wdw, eps, clip)
            for f in range(k):
                v[j, f], mv[j, f], sv[j, f] = _adam(float(v[j, f]), gv[i, f], mv[j, f], sv[j, f],
                                                    lrv, wdv, eps, clip)
    return total
