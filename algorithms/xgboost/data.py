"""Training channels to arrays for a DMatrix (docs/images/xgboost.md): CSV, libsvm, recordIO-protobuf, Parquet.

Parsing runs in the caller's thread with the shared readers; the DMatrix itself is built where the
collective is (see training.py), because XGBoost agrees on the number of columns across hosts there.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from algorithms.xgboost import lenient_csv
from algorithms.xgboost.import_xgboost import xgboost
from common.channels import PIPE, DataChannel, maybe_gunzip
from common.data import content_types as ct
from common.data import csv_numpy
from common.data.batch import Batch, first_non_finite, non_finite_message
from common.data.content_types import MediaType
from common.data.csv_reader import CsvReader
from common.data.registry import reader_for
from common.errors import UserError

log = logging.getLogger(__name__)
BLOCK_ROWS = 1 << 40  # one batch per block the readers parse: no re-slicing


@dataclass
class Data:
    features: Any                       # float32 ndarray (n, d) or CSR
    labels: np.ndarray                  # float32 (n,)
    weights: np.ndarray | None = None
    qid: np.ndarray | None = None
    segments: list[tuple[str, int, int]] = field(default_factory=list)  # (source, first row, rows)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def where(self, index: int) -> str:
        """`row 12 of train/part-0.csv` for a row of the concatenated data."""
        for source, first, rows in self.segments:
            if index < rows:
                return f"row {first + index} of {source}"
            index -= rows
        return f"row {index + 1}"


def load(channel: DataChannel, media: MediaType, csv_weights: bool) -> Data:
    """All rows of a channel, parsed as `media` (the train channel's type, used for both channels)."""
    data = _fast(channel, media, csv_weights)
    if data is None:
        batches = list(_batches(channel, media, csv_weights))
        data = _assemble(batches, channel.name, csv_weights and media.name == ct.CSV)
    _check_finite(data, media, csv_weights)
    return data


def _check_finite(data: Data, media: MediaType, csv_weights: bool) -> None:
    """NaN is a missing value; an infinite one (or one beyond float32) is refused, naming row and column."""
    found = first_non_finite(data.features, missing_ok=True)
    if found is None:
        return
    row, column, value = found
    if media.name == ct.CSV:
        column_text = f"column {column + (2 if csv_weights else 1) + 1}"
    elif media.name == ct.LIBSVM:
        column_text = f"feature index {column}"
    else:
        column_text = f"feature {column + 1}"
    raise UserError(non_finite_message(f"{data.where(row).capitalize()}, {column_text}", value))


def dmatrix(part: Data, nthread: int = -1) -> Any:
    """The DMatrix of parsed rows (NaN is missing). Under a multi-host collective, build it inside
    `collective.run`: XGBoost agrees on the number of columns across hosts there."""
    xgb = xgboost()
    # A plain DMatrix, as upstream: QuantileDMatrix saves memory for hist but took longer to build here.
    return xgb.DMatrix(part.features, label=part.labels, weight=part.weights, qid=part.qid, missing=np.nan,
                       nthread=nthread)


def _fast(channel: DataChannel, media: MediaType, csv_weights: bool) -> Data | None:
    """Plain files in File mode, parsed on every core (parallel_read.py); None: use the streaming readers, which
    also take a small job's CSV (csv_numpy.py: no numba)."""
    files = channel.files()
    if channel.config.input_mode == PIPE or not files or media.params.get("label_size", "1") != "1":
        return None
    if media.name == ct.CSV and csv_numpy.takes(sum(path.stat().st_size for path in files)):
        return None
    from common.data import parallel_read
    segments = []
    if media.name == ct.CSV:
        loaded = parallel_read.load_csv(files, 2 if csv_weights else 1)
        if loaded is None:
            return None
        features, labels, per_file = loaded
        data = Data(features, labels[:, 0].copy(), labels[:, 1].copy() if csv_weights else None)
    elif media.name == ct.LIBSVM:
        parsed = parallel_read.load_libsvm(files)
        if parsed is None:
            return None
        per_file = parsed["rows_per_file"]
        data = Data(parsed["features"], parsed["labels"], parsed["weights"], parsed["qid"])
    else:
        return None
    for number, rows in per_file:
        segments.append((str(files[number].relative_to(channel.data_dir)), 1, rows))
    data.segments = segments
    return data


def _batches(channel: DataChannel, media: MediaType, csv_weights: bool) -> Iterator[Batch]:
    if media.name == ct.PARQUET:
        yield from _parquet(channel)
        return
    if media.name == ct.CSV:
        label_size = media.params.get("label_size", "1")
        if label_size != "1":
            raise UserError(f"ContentType '{_text(media)}' is not an accepted csv ContentType: the optional "
                            "parameter label_size must be 1.")
        reader: Any = CsvReader(2 if csv_weights else 1)
    elif media.name == ct.LIBSVM:
        from common.data.libsvm_reader import LibsvmReader  # numba and scipy: not for a CSV job

        reader = LibsvmReader()
    elif media.name == ct.RECORDIO:
        reader = reader_for(media)
    else:
        raise UserError(f"Content type '{media.name}' cannot be used for training; use text/csv, text/libsvm, "
                        "application/x-parquet or application/x-recordio-protobuf.")
    for source, stream in channel.streams():
        try:
            batches = list(reader.batches(stream, source, BLOCK_ROWS))  # whole: a lenient re-read replaces them
        except UserError as exc:
            if media.name != ct.CSV or channel.config.input_mode == PIPE:  # a FIFO cannot be read twice
                raise UserError(_hint(exc.message, media)) from None
            with open(channel.data_dir / source, "rb") as raw:
                batches = [lenient_csv.read(maybe_gunzip(raw, source), source, 2 if csv_weights else 1)]
        yield from batches


def _hint(message: str, media: MediaType) -> str:
    if media.name == ct.LIBSVM and "label '" in message and "," in message:
        return (message.rstrip(".") + ": this looks like CSV, but the channel is read as libsvm, which is also "
                "what a channel without ContentType means; set ContentType to text/csv.")
    return message


def _parquet(channel: DataChannel) -> Iterator[Batch]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("Parquet input needs pyarrow, which this image lacks; use text/csv instead.") from None
    for source, stream in channel.streams():
        try:
            table = pq.read_table(io.BytesIO(stream.read()))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
            raise UserError(f"Failed to load parquet data from {source}: {exc}") from None
        try:
            matrix = np.column_stack([c.to_numpy(zero_copy_only=False).astype(np.float32) for c in table.columns])
        except (ValueError, TypeError):
            raise UserError(f"{source} has non-numeric columns; Parquet training data must be all numbers, "
                            "label first.") from None
        if matrix.size:
            yield Batch(np.ascontiguousarray(matrix[:, 1:]), np.ascontiguousarray(matrix[:, :1]), 1, source)


def _assemble(batches: list[Batch], channel: str, weighted_csv: bool) -> Data:
    batches = [b for b in batches if len(b)]
    if not batches:
        return Data(np.empty((0, 0), np.float32), np.empty(0, np.float32))
    if any(b.labels is None or b.labels.shape[1] == 0 for b in batches):
        raise UserError(f"Got input data without labels in the {channel} channel: every row needs a label "
                        "(CSV: first column; recordIO: label['values']).")
    segments = [(b.source, b.first_row, len(b)) for b in batches]
    labels = np.concatenate([b.labels[:, 0] for b in batches]).astype(np.float32, copy=False)
    weights = qid = None
    if weighted_csv:
        weights = np.concatenate([b.labels[:, 1] for b in batches]).astype(np.float32, copy=False)
    elif any(getattr(b, "weights", None) is not None for b in batches):
        weights = np.concatenate([_or(getattr(b, "weights", None), len(b), 1.0, np.float32) for b in batches])
    if any(getattr(b, "qid", None) is not None for b in batches):
        qid = np.concatenate([_or(getattr(b, "qid", None), len(b), 0, np.int64) for b in batches])
    return Data(_stack(batches), labels, weights, qid, segments)


def combine(train: Data, validation: Data | None) -> Data:
    """The train rows, then the validation rows, as one data set (k-fold cross-validation)."""
    if validation is None or not len(validation):
        return train
    if not len(train):
        return validation
    parts = (train, validation)
    widths = [p.features.shape[1] for p in parts]
    if any(_is_sparse(p.features) for p in parts):
        import scipy.sparse as sp

        matrices = [sp.csr_matrix(p.features) for p in parts]
        features: Any = sp.vstack([sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], max(widths)))
                                   for m in matrices], format="csr")
    elif widths[0] != widths[1]:
        raise UserError(f"The validation channel has {widths[1]} feature columns but the train channel has "
                        f"{widths[0]}; they need the same columns.")
    else:
        features = np.concatenate([p.features for p in parts])
    weights = qid = None
    if any(p.weights is not None for p in parts):
        weights = np.concatenate([_or(p.weights, len(p), 1.0, np.float32) for p in parts])
    if any(p.qid is not None for p in parts):
        qid = np.concatenate([_or(p.qid, len(p), 0, np.int64) for p in parts])
    return Data(features, np.concatenate([p.labels for p in parts]), weights, qid, train.segments + validation.segments)


def _is_sparse(features: Any) -> bool:
    return hasattr(features, "tocsr")


def _or(array: np.ndarray | None, rows: int, fill: float, dtype: type) -> np.ndarray:
    return np.full(rows, fill, dtype) if array is None else array.astype(dtype, copy=False)


def _stack(batches: list[Batch]) -> Any:
    width = max(b.width for b in batches)
    if not any(b.is_sparse for b in batches):
        for b in batches:
            if b.width != width:
                raise UserError(f"{b.where(0).capitalize()} has {b.width} feature columns but other rows have "
                                f"{width}; every file of a channel needs the same columns.")
        return batches[0].features if len(batches) == 1 else np.concatenate([b.features for b in batches])
    import scipy.sparse as sp

    parts = [sp.csr_matrix(b.features) for b in batches]
    parts = [p if p.shape[1] == width else sp.csr_matrix((p.data, p.indices, p.indptr), shape=(p.shape[0], width))
             for p in parts]
    return parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")


def check_labels(data: Data, objective: str, num_class: int | None) -> None:
    """The label errors XGBoost would report without a row number, with one."""
    labels = data.labels
    if not len(labels):
        return
    bad = np.flatnonzero(~np.isfinite(labels))
    if len(bad):
        raise UserError(f"The label in {data.where(int(bad[0]))} is missing or not a number.")
    if objective.startswith("multi:") and num_class:
        bad = np.flatnonzero((labels < 0) | (labels >= num_class) | (labels != np.floor(labels)))
        if len(bad):
            raise UserError(f"The label {labels[bad[0]]:g} in {data.where(int(bad[0]))} is not a class: with "
                            f"num_class={num_class} labels must be whole numbers from 0 to {num_class - 1}.")
    elif objective in ("binary:logistic", "reg:logistic"):
        bad = np.flatnonzero((labels < 0) | (labels > 1))
        if len(bad):
            raise UserError(f"The label {labels[bad[0]]:g} in {data.where(int(bad[0]))} is outside [0, 1], "
                            f"which objective {objective} needs.")
    elif objective in ("count:poisson", "reg:tweedie", "reg:gamma"):
        bad = np.flatnonzero(labels < 0 if objective != "reg:gamma" else labels <= 0)
        if len(bad):
            raise UserError(f"The label {labels[bad[0]]:g} in {data.where(int(bad[0]))} is not allowed: objective "
                            f"{objective} needs {'positive' if objective == 'reg:gamma' else 'non-negative'} labels.")


def warn_duplicates(train: DataChannel, validation: DataChannel | None) -> None:
    if validation is None:
        return
    seen = {(p.name, p.stat().st_size) for p in train.files()}
    same = sorted(p.name for p in validation.files() if (p.name, p.stat().st_size) in seen)
    if same:
        log.warning("Files with the same name and size are in both train and validation (%s): is the "
                    "validation data a copy of the training data?", ", ".join(same[:5]))


def _text(media: MediaType) -> str:
    return media.name + "".join(f";{k}={v}" for k, v in media.params.items())
