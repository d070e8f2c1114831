"""Numba kernels for recordIO-protobuf: a framing pass, then a Record decode pass.

They walk a uint8 view of the bytes and report problems as codes in `info` (see the
names below); common/data/recordio_reader.py turns codes into sentences and arrays into Batches.
"""

from __future__ import annotations

import numpy as np

from common.data.jit import numba

MAGIC = 0xCED7230A
_LEN_MASK = (1 << 29) - 1
_MAX_WIDTH = (1 << 31) - 1
F32, F64, I32, BYTES = 1, 2, 3, 4  # tensor kinds of a Value; 0 = none set
# Error codes the kernels leave in info[0]; details in info[1:4], shape dims in info[_DIMS:].
(BAD_MAGIC, CUT_HEADER, CUT_PAYLOAD, BAD_CFLAG, CUT_PARTS, MALFORMED, NO_FEATURES, BYTES_VALUE,
 NO_TENSOR, NO_SHAPE, BAD_KEY, KEY_COUNT, SHAPE_COUNT, SPARSE_LABEL, TOO_WIDE, MISFIT) = range(1, 17)
_DIMS = 5
_INFO = 16

@numba.njit(cache=True)
def _fail(info, code, a, b, c):
    info[0], info[1], info[2], info[3] = code, a, b, c


@numba.njit(cache=True)
def _copy(src, dst):
    # LLVM vectorises this loop (indices from range() are never negative); a numba slice
    # assignment copies about four times slower.
    for j in range(src.size):
        dst[j] = src[j]


@numba.njit(cache=True)
def _u32(buf, p):
    return np.int64(buf[p]) | np.int64(buf[p + 1]) << 8 | np.int64(buf[p + 2]) << 16 | np.int64(buf[p + 3]) << 24


@numba.njit(cache=True)
def _varint(buf, p, end):
    """(value, next position); position -1 when truncated or longer than 10 bytes."""
    value = np.int64(0)
    shift = 0
    while p < end and shift < 64:
        byte = np.int64(buf[p])
        p += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, p
        shift += 7
    return value, -1


@numba.njit(cache=True)
def _len_field(buf, p, end):
    """(start, stop) of a length-delimited body at p; stop -1 when it overruns end."""
    n, p = _varint(buf, p, end)
    if p < 0 or n < 0 or n > end - p:
        return p, -1
    return p, p + n


@numba.njit(cache=True)
def _tag(buf, p, end):
    """(field number, wire type, next position); position -1 for a bad tag or field number 0."""
    tag, p = _varint(buf, p, end)
    return tag >> 3, tag & 7, (p if tag >> 3 > 0 else -1)


@numba.njit(cache=True)
def _skip(buf, p, end, wire_type):
    """Position after an unknown field's body (after its end tag for a group), or -1."""
    depth = 0
    while True:
        if wire_type == 0:
            p = _varint(buf, p, end)[1]
        elif wire_type == 2:
            p = _len_field(buf, p, end)[1]
        elif wire_type == 1 or wire_type == 5:
            size = 8 if wire_type == 1 else 4
            p = p + size if p + size <= end else -1
        elif wire_type == 3 or (wire_type == 4 and depth > 0):
            depth += 1 if wire_type == 3 else -1
        else:
            return -1
        if p < 0 or depth == 0:
            return p
        _, wire_type, p = _tag(buf, p, end)
        if p < 0:
            return -1


@numba.njit(cache=True)
def _scan_frames(buf, at_eof, max_records, starts, lengths, info):
    """Find up to max_records whole records; store start/joined length while `starts` has room.

    Returns (records, bytes consumed, any multi-part). An incomplete record ends the scan
    quietly unless at_eof; a missing final padding is accepted at end of input.
    """
    end = buf.size
    pos = n = 0
    multipart = False
    while n < max_records and pos < end:
        p, total, first, padded = pos, 0, True, 0
        while True:
            if end - p < 8:
                if at_eof:
                    _fail(info, CUT_PARTS if p == end else CUT_HEADER, p, end - p, pos)
                return n, pos, multipart
            magic, word = _u32(buf, p), _u32(buf, p + 4)
            cflag, length = word >> 29, word & _LEN_MASK
            if magic != MAGIC or ((cflag > 1) if first else (cflag < 2 or cflag > 3)):
                if magic != MAGIC:
                    _fail(info, BAD_MAGIC, p, magic, 0)
                else:
                    _fail(info, BAD_CFLAG, p, np.int64(first), cflag)
                return n, pos, multipart
            if length > end - p - 8:
                if at_eof:
                    _fail(info, CUT_PAYLOAD, p, length, end - p - 8)
                return n, pos, multipart
            total += length if first else length + 4  # re-joined parts regain the magic bytes
            padded = p + 8 + (length + 3) // 4 * 4
            if cflag == 0 or cflag == 3:
                break
            multipart, first, p = True, False, padded
        if padded > end and not at_eof:
            return n, pos, multipart
        if n < starts.size:
            starts[n], lengths[n] = pos, total
        n += 1
        pos = min(padded, end)
    return n, pos, multipart


@numba.njit(cache=True)
def _join_parts(buf, frames, out, starts):
    """Copy each record's payload to `out`, re-joining multi-part records around the magic."""
    o = 0
    for i in range(frames.size):
        starts[i] = o
        p = frames[i]
        while True:
            word = _u32(buf, p + 4)
            length = word & _LEN_MASK
            _copy(buf[p + 8 : p + 8 + length], out[o : o + length])
            o += length
            if word >> 29 == 0 or word >> 29 == 3:
                break
            out[o : o + 4] = buf[frames[i] : frames[i] + 4]
            o += 4
            p += 8 + length


@numba.njit(cache=True)
def _values_run(buf, p, q, kind, fill, vals, at, scratch):
    """Decode the values in buf[p:q] into vals[at:] when filling; count, -1 if malformed, -2
    if they do not fit in vals (a wrong guess of the record sizes)."""
    if kind == I32:
        n = 0
        while p < q:
            v, p = _varint(buf, p, q)
            if p < 0:
                return -1
            if fill and at + n >= vals.size:
                return -2
            if fill:
                vals[at + n] = np.float32(((v & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000)  # low 32 bits, as protobuf
            n += 1
        return n
    size = 4 if kind == F32 else 8
    if (q - p) % size:
        return -1
    n = (q - p) // size
    if fill and at + n > vals.size:
        return -2
    if fill and kind == F32:
        _copy(buf[p:q], vals.view(np.uint8)[4 * at : 4 * (at + n)])
    elif fill:
        doubles = scratch.view(np.float64)
        for j in range(n):
            scratch[:] = buf[p + 8 * j : p + 8 * j + 8]
            vals[at + j] = np.float32(doubles[0])
    return n


@numba.njit(cache=True)
def _tensor(buf, p, end, kind, fill, vals, at, keys, scratch, dims):
    """Walk a Float32/Float64/Int32Tensor: (values, keys, largest key, dims, width, error code).

    Packed and unpacked runs may repeat and mix. The largest key compares as uint64 (a
    negative int64 is huge); width is the shape product, -1 when too large. The fill pass
    writes values to vals[at:] and keys to keys[at:].
    """
    nv = nk = nd = 0
    max_key, width = np.int64(0), np.int64(1)
    scalar_type = 0 if kind == I32 else (5 if kind == F32 else 1)
    while p < end:
        field, wire_type, p = _tag(buf, p, end)
        known = p >= 0 and 1 <= field <= 3
        if known and wire_type == 2:
            p, q = _len_field(buf, p, end)
        elif known and wire_type == (scalar_type if field == 1 else 0):
            q = _skip(buf, p, end, wire_type)
        else:  # unknown, or a known field with another wire type: protobuf skips both
            q = _skip(buf, p, end, wire_type) if p >= 0 else -1
            field = 0
        if q < 0:
            return nv, nk, max_key, nd, width, MALFORMED
        if field == 0:
            p = q
            continue
        if field == 1:
            count = _values_run(buf, p, q, kind, fill, vals, at + nv, scratch)
            if count < 0:
                return nv, nk, max_key, nd, width, MALFORMED if count == -1 else MISFIT
            nv += count
            p = q
        while p < q:
            v, p = _varint(buf, p, q)
            if p < 0:
                return nv, nk, max_key, nd, width, MALFORMED
            if field == 2:
                if fill and keys.size:
                    keys[at + nk] = v
                nk += 1
                if max_key >= 0 and (v < 0 or v > max_key):
                    max_key = v
            else:
                if nd < dims.size:
                    dims[nd] = v
                nd += 1
                too_wide = width < 0 or v < 0 or v > _MAX_WIDTH or width * v > _MAX_WIDTH
                width = -1 if too_wide else width * v
    return nv, nk, max_key, nd, width, 0


@numba.njit(cache=True)
def _value(buf, p, end):
    """(kind, start, stop, ok) of the tensor a Value holds; the last oneof member wins."""
    kind, start, stop = 0, 0, 0
    while p < end:
        field, wire_type, p = _tag(buf, p, end)
        if p >= 0 and wire_type == 2 and (field == 2 or field == 3 or field == 7 or field == 9):
            p, q = _len_field(buf, p, end)
            kind = F32 if field == 2 else (F64 if field == 3 else (I32 if field == 7 else BYTES))
            start, stop, p = p, q, q
        elif p >= 0:
            p = _skip(buf, p, end, wire_type)
        if p < 0:
            return 0, 0, 0, False
    return kind, start, stop, True


@numba.njit(cache=True)
def _map_entry(buf, p, end):
    """(key is "values", Value start, Value stop, ok) of one map entry; no value = empty Value."""
    is_values, start, stop = False, end, end
    while p < end:
        field, wire_type, p = _tag(buf, p, end)
        if p >= 0 and wire_type == 2 and (field == 1 or field == 2):
            p, q = _len_field(buf, p, end)
            if field == 1:
                is_values = q - p == 6 and _u32(buf, p) == 0x756C6176 and buf[p + 4] == 101 and buf[p + 5] == 115
            else:
                start, stop = p, q
            p = q
        elif p >= 0:
            p = _skip(buf, p, end, wire_type)
        if p < 0:
            return False, 0, 0, False
    return is_values, start, stop, True


@numba.njit(cache=True)
def _record(buf, p, end):
    """(features Value start, stop, label Value start, stop, ok); -1 bounds when absent."""
    fs = fe = ls = le = -1
    while p < end:
        field, wire_type, p = _tag(buf, p, end)
        if p >= 0 and wire_type == 2 and (field == 1 or field == 2):
            p, q = _len_field(buf, p, end)
            is_values, start, stop, ok = _map_entry(buf, p, q) if q >= 0 else (False, 0, 0, False)
            if not ok:
                return fs, fe, ls, le, False
            if is_values and field == 1:
                fs, fe = start, stop
            elif is_values:
                ls, le = start, stop
            p = q
        elif p >= 0:
            p = _skip(buf, p, end, wire_type)
        if p < 0:
            return fs, fe, ls, le, False
    return fs, fe, ls, le, True


@numba.njit(cache=True)
def _check_features(nv, nk, max_key, nd, width):
    """(error code or 0, sparse, row width) of a features tensor."""
    if nk == 0 and (nd == 0 or nv > 0):
        return (SHAPE_COUNT if nd > 0 and width != nv else 0), False, nv
    if nd == 0 or width < 0:
        return (NO_SHAPE if nd == 0 else TOO_WIDE), True, 0
    if nk != nv:
        return KEY_COUNT, True, width
    return (BAD_KEY if max_key < 0 or max_key >= width else 0), True, width


@numba.njit(cache=True)
def _decode(buf, starts, lengths, fill, vals, keys, labs, vptr, lptr, widths, sparse, labelled, scratch, info):
    """Check every record, noting its width, sparseness and label presence.

    Count pass (fill False): note the value and label counts in vptr[i+1] and lptr[i+1].
    Fill pass: write values, keys (of dense rows too when `keys` is non-empty) and labels at
    the vptr/lptr offsets; a record whose counts differ from its slot is a MISFIT.
    Returns the index of the first bad record (details in info) or -1.
    """
    dims = info[_DIMS:]
    no_keys = keys[:0]
    for i in range(starts.size):
        fs, fe, ls, le, ok = _record(buf, starts[i], starts[i] + lengths[i])
        _fail(info, 0 if ok else MALFORMED, 0, 0, 0)
        if ok and fs < 0:
            info[0] = NO_FEATURES
        for part in range(2):
            start, stop = (fs, fe) if part == 0 else (ls, le)
            if info[0] or start < 0:
                break
            kind, ts, te, ok = _value(buf, start, stop)
            if not ok or kind == 0 or kind == BYTES:
                info[0] = MALFORMED if not ok else (NO_TENSOR if kind == 0 else BYTES_VALUE)
                info[1] = part
                break
            out, ptr = (vals, vptr) if part == 0 else (labs, lptr)
            at = ptr[i] if fill else 0
            nv, nk, max_key, nd, width, code = _tensor(
                buf, ts, te, kind, fill, out, at, keys if part == 0 else no_keys, scratch, dims)
            info[_DIMS - 1] = nd
            if code or (part == 1 and nk > 0):
                info[0] = code if code else SPARSE_LABEL
            elif fill and nv != ptr[i + 1] - at:
                info[0] = MISFIT
            elif part == 0:
                info[0], sparse[i], widths[i] = _check_features(nv, nk, max_key, nd, width)
                info[1], info[2] = (max_key, 0) if info[0] == BAD_KEY else (nk if nk else nv, nv)
                if fill and nk == 0 and keys.size:
                    for j in range(nv):
                        keys[at + j] = j
            if not fill:
                ptr[i + 1] = nv
        if info[0]:
            return i
        labelled[i] = ls >= 0
    return -1


# ---------------------------------------------------------------- Python side
