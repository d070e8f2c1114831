"""One reader per content type; training channels and request bodies use the same ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol

from common import content_types as ct
from common.batch import Batch
from common.content_types import MediaType
from common.errors import UnsupportedContentType, UserError


class Reader(Protocol):
    def parse(self, body: bytes, source: str = "request") -> Batch: ...

    def batches(self, stream: BinaryIO, source: str, batch_rows: int) -> Iterator[Batch]: ...


def label_size_of(media: MediaType, default: int) -> int:
    text = media.params.get("label_size")
    if text is None:
        return default
    if not text.isdigit():
        raise UnsupportedContentType(f"label_size must be a non-negative integer, got '{text}'.")
    return int(text)


def reader_for(media: MediaType, *, label_size: int = 0, labelled: bool = True) -> Reader:
    """The reader for a content type. `label_size` is the CSV default when the type has none."""
    if media.name == ct.CSV:
        from common.readers.csv_reader import CsvReader

        return CsvReader(label_size_of(media, label_size))
    if media.name == ct.RECORDIO:
        from common.readers.recordio import RecordIOReader

        return RecordIOReader()
    if media.name == ct.JSON:
        from common.readers.json_reader import JsonReader

        return JsonReader()
    if media.name == ct.JSONLINES:
        from common.readers.json_reader import JsonLinesReader

        return JsonLinesReader()
    if media.name == ct.LIBSVM:
        from common.readers.libsvm_reader import LibsvmReader

        return LibsvmReader(labelled=labelled)
    raise UnsupportedContentType(f"Content type '{media.name}' is not supported.")


__all__ = ["Reader", "reader_for", "label_size_of", "UserError"]
