"""What runs inside the isolated child (isolation.py): a reader on one body, judged; a request replayed.

`check_reader` returns ("ok", rows, width) or ("user_error", message) and raises AssertionError for anything
else: a batch whose shape, dtype or row count is wrong, `parse` and `batches` disagreeing, or any exception
that is not a UserError (its traceback goes back to the parent).
"""

from __future__ import annotations

import io
import traceback
from typing import Any

import numpy as np

from common.data.batch import Batch, concat
from common.errors import UserError

READERS = ("csv", "json", "jsonlines", "recordio", "libsvm")


def make_reader(kind: str, option: int = 0, chunk_bytes: int | None = None) -> Any:
    """The reader for `kind`; `option` is CSV's label_size or libsvm's labelled (1) / request (0) mode."""
    chunk = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    if kind == "csv":
        from common.data.csv_reader import CsvReader

        return CsvReader(option, **chunk)
    if kind == "json":
        from common.data.json_reader import JsonReader

        return JsonReader()
    if kind == "jsonlines":
        from common.data.json_reader import JsonLinesReader

        return JsonLinesReader()
    if kind == "recordio":
        from common.data.recordio_reader import RecordIOReader

        return RecordIOReader(**chunk)
    if kind == "libsvm":
        from common.data.libsvm_reader import LibsvmReader

        return LibsvmReader(labelled=bool(option), **chunk)
    raise ValueError(kind)


def check_reader(kind: str, option: int, body: bytes, chunk_bytes: int, batch_rows: int) -> tuple:
    """parse(body) and batches(stream of body) on small chunks: both a valid batch, or both a UserError."""
    try:
        parsed: Batch | None = make_reader(kind, option).parse(body, "fuzz")
        parse_error = ""
    except UserError as exc:
        parsed, parse_error = None, _readable(exc, "parse")
    if parsed is not None:
        _check_batch(kind, option, body, parsed, "parse")
    try:
        parts = list(make_reader(kind, option, chunk_bytes).batches(io.BytesIO(body), "fuzz", batch_rows))
        streamed_error = ""
    except UserError as exc:
        parts, streamed_error = None, _readable(exc, "batches")
    if parts is not None:
        for part in parts:
            _check_batch(kind, option, None, part, "batches")
            # JSON bodies are read whole: their readers give one batch, however long
            assert len(part) <= batch_rows or kind in ("json", "jsonlines"), \
                f"batches gave {len(part)} rows, more than batch_rows={batch_rows}"
    if parsed is None and parts is None:
        return ("user_error", parse_error)
    if parsed is None or parts is None:
        raise AssertionError(f"parse and batches disagree: parse {parse_error or 'succeeded'}; "
                             f"batches {streamed_error or 'succeeded'}")
    _check_same(parsed, parts)
    return ("ok", len(parsed), parsed.width)


def _readable(exc: UserError, where: str) -> str:
    message = exc.message
    assert isinstance(message, str) and message.strip(), f"{where}: a UserError with no message"
    assert 400 <= exc.status < 500, f"{where}: a UserError with status {exc.status}: {message}"
    return message


def _check_batch(kind: str, option: int, body: bytes | None, batch: Batch, where: str) -> None:
    assert isinstance(batch, Batch), f"{where} gave {type(batch).__name__}, not a Batch"
    features = batch.features
    assert features.ndim == 2, f"{where}: features have shape {features.shape}"
    assert features.dtype == np.float32, f"{where}: features are {features.dtype}, not float32"
    n, width = features.shape
    assert n >= 0 and width >= 0 and len(batch) == n
    if batch.is_sparse:
        assert features.format == "csr", f"{where}: sparse features are {features.format}, not CSR"
        features.check_format(full_check=True)
        if features.nnz:
            assert 0 <= int(features.indices.min()) and int(features.indices.max()) < width
    else:
        assert isinstance(features, np.ndarray), f"{where}: features are {type(features).__name__}"
    labels = batch.labels
    if labels is not None:
        assert isinstance(labels, np.ndarray) and labels.dtype == np.float32, f"{where}: labels {labels!r:.80}"
        assert labels.ndim == 2 and labels.shape[0] == n, f"{where}: labels {labels.shape} for {n} rows"
    if kind == "csv":
        label_size = option
        assert (labels is None) == (label_size == 0), f"{where}: labels {labels is not None}, label_size {option}"
        if labels is not None:
            assert labels.shape[1] == label_size, f"{where}: labels {labels.shape}, label_size {label_size}"
        if body is not None:
            lines = sum(1 for line in body.split(b"\n") if line.strip())
            assert n == lines, f"{where}: {n} rows from {lines} non-blank lines"
    if kind == "jsonlines" and body is not None:
        lines = sum(1 for line in body.splitlines() if line.strip())
        assert n == lines, f"{where}: {n} rows from {lines} non-blank lines"
    if kind == "libsvm":
        assert batch.is_sparse, f"{where}: libsvm features are dense"
        assert (labels is not None) == bool(option), f"{where}: labels {labels is not None}, labelled {option}"
        if labels is not None:
            assert labels.shape[1] == 1
        for name in ("weights", "qid"):
            extra = getattr(batch, name)
            assert extra is None or (isinstance(extra, np.ndarray) and extra.shape == (n,)), f"{where}: {name}"
        if body is not None:
            lines = sum(1 for line in body.split(b"\n") if line.strip())
            assert n == lines, f"{where}: {n} rows from {lines} non-blank lines"
    if kind in ("json", "jsonlines"):
        assert labels is None, f"{where}: JSON requests have no labels"


def _check_same(parsed: Batch, parts: list[Batch]) -> None:
    rows = sum(len(p) for p in parts)
    assert rows == len(parsed), f"parse gave {len(parsed)} rows, batches {rows}"
    if not rows:
        return
    widths = {p.width for p in parts if len(p)}
    if parsed.is_sparse:
        # libsvm: each block is as wide as its largest index (the caller pads); never wider than the whole
        assert max(widths) == parsed.width, f"parse gave width {parsed.width}, batches {sorted(widths)}"
        import scipy.sparse as sp

        parts = [Batch(sp.csr_matrix((p.features.data, p.features.indices, p.features.indptr),
                                     shape=(len(p), parsed.width)), p.labels) if p.is_sparse else p for p in parts]
    else:
        assert widths == {parsed.width}, f"parse gave width {parsed.width}, batches {sorted(widths)}"
    streamed = concat([p for p in parts if len(p)])
    if len(parsed) * parsed.width <= 1 << 22:
        same = np.array_equal(parsed.dense(), streamed.dense(), equal_nan=True)
    else:  # compared as canonical CSR: a dense copy may not fit in memory
        a, b = _canonical(parsed.features), _canonical(streamed.features)
        same = (np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
                and np.array_equal(a.data, b.data, equal_nan=True))
    assert same, "parse and batches differ in values"
    if parsed.labels is not None or streamed.labels is not None:
        assert parsed.labels is not None and streamed.labels is not None, "labels in one of parse and batches only"
        assert np.array_equal(parsed.labels, streamed.labels, equal_nan=True), "parse and batches differ in labels"


def _canonical(features: Any) -> Any:
    import scipy.sparse as sp

    matrix = sp.csr_matrix(features, copy=True)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


# ---- requests replayed against a loaded model --------------------------------------------------------------
_MODELS: dict[tuple[str, str], Any] = {}


def replay(algorithm: str, model_dir: str, body: bytes, content_type: str, accept: str | None) -> tuple:
    """`invoke` on a model loaded in this child: ("ok", mimetype), ("user_error", status, message) or
    ("error", exception type, innermost file:line, the traceback's last line, its last lines)."""
    from common.serving.app import invoke

    model = _model(algorithm, model_dir)
    try:
        _, mimetype = invoke(model, body, content_type, accept)
    except UserError as exc:
        return ("user_error", exc.status, exc.message)
    except Exception as exc:  # noqa: BLE001 - reported, not judged, here
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename.rsplit('/', 2)[-1]}:{frames[-1].lineno}" if frames else "?"
        lines = traceback.format_exc().strip().splitlines()
        return ("error", type(exc).__name__, where, lines[-1], "\n".join(lines[-12:]))
    return ("ok", mimetype)


def minimize(algorithm: str, model_dir: str, body: bytes, content_type: str, accept: str | None,
             budget: int = 400) -> bytes:
    """A shorter body that fails the same way (same exception type, raised at the same line): delta debugging."""
    target = replay(algorithm, model_dir, body, content_type, accept)[:3]
    if target[0] != "error":
        return body
    tries = 0
    chunk = max(1, len(body) // 2)
    while chunk >= 1 and tries < budget:
        start, shrunk = 0, False
        while start < len(body) and tries < budget:
            candidate = body[:start] + body[start + chunk:]
            tries += 1
            if candidate.strip() and replay(algorithm, model_dir, candidate, content_type, accept)[:3] == target:
                body, shrunk = candidate, True
            else:
                start += chunk
        if not shrunk:
            chunk //= 2
    return body


def _model(algorithm: str, model_dir: str) -> Any:
    key = (algorithm, model_dir)
    if key not in _MODELS:
        from pathlib import Path

        from common.algorithm import load_algorithm

        _MODELS[key] = load_algorithm(algorithm).load(Path(model_dir))
    return _MODELS[key]


def parsed_values(kind: str, option: int, body: bytes) -> np.ndarray:
    """The dense features `parse` gives (for small bodies whose values a test checks)."""
    return make_reader(kind, option).parse(body, "fuzz").dense()
