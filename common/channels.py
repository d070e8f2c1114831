"""Training channels: what an algorithm declares, what inputdataconfig.json asks for, and the data.

File mode reads every non-hidden file under input/data/<channel>/ (recursively, sorted);
Pipe mode reads the FIFO input/data/<channel>_<epoch>. Gzip is detected by its magic bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from common.data import content_types as ct
from common.data.batch import Batch, concat
from common.data.content_types import MediaType
from common.data.registry import Reader, label_size_of, reader_for
from common.errors import UserError, join_problems

FILE, PIPE, FASTFILE = "File", "Pipe", "FastFile"
REPLICATED, SHARDED = "FullyReplicated", "ShardedByS3Key"
PIPE_WAIT_S = 120.0
_TEXT_FIELDS = ("ContentType", "TrainingInputMode", "S3DistributionType")


@dataclass(frozen=True)
class ChannelSpec:
    """What an algorithm accepts on one channel.

    `csv_label_size`: label columns when a CSV ContentType gives no label_size;
    None means infer from feature_dim (one extra leading column is a label).
    """

    name: str
    required: bool = False
    content_types: tuple[str, ...] = (ct.RECORDIO, ct.CSV)
    input_modes: tuple[str, ...] = (FILE, PIPE, FASTFILE)
    distributions: tuple[str, ...] = (REPLICATED, SHARDED)
    csv_label_size: int | None = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "IsRequired": self.required,
            "SupportedContentTypes": list(self.content_types),
            "SupportedInputModes": list(self.input_modes),
            "SupportedS3DataDistributionTypes": list(self.distributions),
        }


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    media: MediaType
    input_mode: str
    distribution: str
    spec: ChannelSpec


def parse_input_data_config(
    raw: dict[str, Any], specs: tuple[ChannelSpec, ...], default_content_type: str
) -> dict[str, ChannelConfig]:
    """Check inputdataconfig.json against the declared channels; every problem at once."""
    by_name = {s.name: s for s in specs}
    problems: list[str] = []
    configs: dict[str, ChannelConfig] = {}
    for name, entry in raw.items():
        spec = by_name.get(name)
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k, ""), str) for k in _TEXT_FIELDS):
            problems.append(f"inputdataconfig.json: channel '{name}' must be an object whose "
                            + ", ".join(_TEXT_FIELDS) + f" are strings, like {{\"ContentType\": \"text/csv\"}}; "
                            f"got {json.dumps(entry)[:80]}")
            continue
        if spec is None:
            problems.append(f"Channel '{name}' is not used by this algorithm; its channels are "
                            + ", ".join(f"'{s}'" for s in by_name))
            continue
        media = MediaType.parse(entry.get("ContentType") or default_content_type)  # type: ignore[union-attr]
        mode = entry.get("TrainingInputMode", FILE)
        distribution = entry.get("S3DistributionType", REPLICATED)
        if media.name not in spec.content_types:
            problems.append(f"Channel '{name}' has ContentType '{entry.get('ContentType')}'; supported: "
                            + ", ".join(spec.content_types))
        if mode not in spec.input_modes:
            problems.append(f"Channel '{name}' has TrainingInputMode '{mode}'; supported: "
                            + ", ".join(spec.input_modes))
        if distribution not in spec.distributions:
            problems.append(f"Channel '{name}' has S3DistributionType '{distribution}'; supported: "
                            + ", ".join(spec.distributions))
        configs[name] = ChannelConfig(name, media, mode, distribution, spec)
    for spec in specs:
        if spec.required and spec.name not in raw:
            problems.append(f"Channel '{spec.name}' is required but inputdataconfig.json has no such channel")
    if problems:
        raise UserError(join_problems(problems))
    return configs


class DataChannel:
    """The data of one channel, streamed in batches of a fixed number of rows."""

    def __init__(self, config: ChannelConfig, data_dir: Path) -> None:
        self.config = config
        self.name = config.name
        self.data_dir = data_dir

    def files(self) -> list[Path]:
        root = self.data_dir / self.name
        if not root.is_dir():
            return []
        return sorted(
            p for p in root.rglob("*")
            if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
        )

    def streams(self, epoch: int = 0) -> Iterator[tuple[str, BinaryIO]]:
        if self.config.input_mode == PIPE:
            fifo = self.data_dir / f"{self.name}_{epoch}"
            _wait_for(fifo)
            with open(fifo, "rb") as raw:
                yield f"{self.name}_{epoch}", maybe_gunzip(raw, f"{self.name}_{epoch}")
            return
        for path in self.files():
            source = str(path.relative_to(self.data_dir))
            with open(path, "rb") as raw:
                yield source, maybe_gunzip(raw, source)

    def reader(self, feature_dim: int | None) -> tuple[Reader, bool]:
        """The reader, and whether a leading CSV column must be split off as a label by width."""
        spec = self.config.spec
        media = self.config.media
        infer = media.name == ct.CSV and "label_size" not in media.params and spec.csv_label_size is None
        return reader_for(media, label_size=label_size_of(media, spec.csv_label_size or 0)), infer

    def batches(self, batch_rows: int, epoch: int = 0, feature_dim: int | None = None,
                finite: bool = True, exact: bool = True) -> Iterator[Batch]:
        """Batches checked for width and NaN: of exactly `batch_rows` rows (the last may be shorter),
        or with `exact=False` of at most `batch_rows`, as read (no copies across file boundaries)."""
        reader, infer_label = self.reader(feature_dim)
        pending: list[Batch] = []
        pending_rows = 0
        for source, stream in self.streams(epoch):
            for batch in reader.batches(stream, source, batch_rows):
                if len(batch) == 0:
                    continue
                if infer_label and feature_dim is not None and batch.width == feature_dim + 1:
                    batch = _split_first_column(batch)
                if feature_dim is not None:
                    batch.check_width(feature_dim)
                if finite:
                    batch.check_finite()
                if not exact:
                    yield batch
                    continue
                pending.append(batch)
                pending_rows += len(batch)
                while pending_rows >= batch_rows:
                    whole = concat(pending)
                    yield _rows(whole, 0, batch_rows)
                    rest = _rows(whole, batch_rows, len(whole))
                    pending, pending_rows = ([rest], len(rest)) if len(rest) else ([], 0)
        if pending:
            yield concat(pending)


def _rows(batch: Batch, start: int, stop: int) -> Batch:
    labels = None if batch.labels is None else batch.labels[start:stop]
    return Batch(batch.features[start:stop], labels, batch.first_row + start, batch.source, batch.label_columns)


def _split_first_column(batch: Batch) -> Batch:
    dense = batch.dense()
    return Batch(np.ascontiguousarray(dense[:, 1:]), np.ascontiguousarray(dense[:, :1]),
                 batch.first_row, batch.source, batch.label_columns + 1)


def maybe_gunzip(raw: BinaryIO, source: str) -> BinaryIO:
    """The stream's bytes, decompressed when they start with gzip's magic; a corrupt or truncated gzip
    stream raises a UserError naming `source` when the bad part is read."""
    buffered = io.BufferedReader(raw) if not isinstance(raw, io.BufferedReader) else raw  # type: ignore[arg-type]
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        return _CheckedGzip(gzip.GzipFile(fileobj=buffered), source)  # type: ignore[return-value]
    return buffered


class _CheckedGzip(io.RawIOBase):
    """A GzipFile whose decompression errors (bad header, bad CRC, cut short) are the user's: their file."""

    def __init__(self, stream: gzip.GzipFile, source: str) -> None:
        self.stream, self.source = stream, source

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read(size)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._corrupt(exc) from None

    def readinto(self, buffer: Any) -> int:
        try:
            return self.stream.readinto(buffer)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._corrupt(exc) from None

    def _corrupt(self, exc: BaseException) -> UserError:
        return UserError(f"{self.source} is not a valid gzip file ({exc}); re-compress it or upload it uncompressed.")


def _wait_for(fifo: Path) -> None:
    deadline = time.monotonic() + PIPE_WAIT_S
    while not fifo.exists():
        if time.monotonic() > deadline:
            raise UserError(f"Pipe mode: {fifo.name} did not appear within {PIPE_WAIT_S:.0f} s.")
        time.sleep(0.05)
