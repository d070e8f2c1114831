"""The content-type registry: one reader and one writer per media type.

Training channels and request bodies use the same readers; every image's responses go through the same
writers, laid out as the model's `ResponseLayout` says. Modules load on first use (start-up stays cheap).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO, Protocol

from common.data import content_types as ct
from common.data.batch import Batch
from common.data.columns import DEFAULT_LAYOUT, Columns, ResponseLayout
from common.data.content_types import MediaType
from common.errors import UnsupportedContentType


class RequestReader(Protocol):
    def parse(self, body: bytes, source: str = "request") -> Batch: ...


class Reader(RequestReader, Protocol):
    def batches(self, stream: BinaryIO, source: str, batch_rows: int) -> Iterator[Batch]: ...


def label_size_of(media: MediaType, default: int) -> int:
    text = media.params.get("label_size")
    if text is None:
        return default
    if not text.isdigit():
        raise UnsupportedContentType(f"label_size must be a non-negative integer, got '{text}'.")
    return int(text)


def _csv(media: MediaType, label_size: int, labelled: bool) -> Reader:
    from common.data.csv_reader import CsvReader

    return CsvReader(label_size_of(media, label_size))


def _recordio(media: MediaType, label_size: int, labelled: bool) -> Reader:
    from common.data.recordio_reader import RecordIOReader

    return RecordIOReader()


def _json(media: MediaType, label_size: int, labelled: bool) -> Reader:
    from common.data.json_reader import JsonReader

    return JsonReader()


def _jsonlines(media: MediaType, label_size: int, labelled: bool) -> Reader:
    from common.data.json_reader import JsonLinesReader

    return JsonLinesReader()


def _libsvm(media: MediaType, label_size: int, labelled: bool) -> Reader:
    from common.data.libsvm_reader import LibsvmReader

    return LibsvmReader(labelled=labelled)


READERS: dict[str, Callable[[MediaType, int, bool], Reader]] = {
    ct.CSV: _csv, ct.RECORDIO: _recordio, ct.JSON: _json, ct.JSONLINES: _jsonlines, ct.LIBSVM: _libsvm,
}


def reader_for(media: MediaType, *, label_size: int = 0, labelled: bool = True) -> Reader:
    """The reader for a content type. `label_size` is the CSV default when the type has none; `labelled`
    says whether libsvm lines start with a label (training data) or not (requests)."""
    make = READERS.get(media.name)
    if make is None:
        raise UnsupportedContentType(f"Content type '{media.name}' is not supported.")
    return make(media, label_size, labelled)


def _encode_json(columns: Columns, layout: ResponseLayout) -> bytes:
    from common.data.json_writer import encode_json

    return encode_json(columns, layout)


def _encode_jsonlines(columns: Columns, layout: ResponseLayout) -> bytes:
    from common.data.json_writer import encode_jsonlines

    return encode_jsonlines(columns, layout)


def _encode_csv(columns: Columns, layout: ResponseLayout) -> bytes:
    from common.data.csv_writer import encode_csv

    return encode_csv(columns, layout)


def _encode_recordio(columns: Columns, layout: ResponseLayout) -> bytes:
    from common.data.recordio_writer import encode_label_records

    return encode_label_records(columns)


WRITERS: dict[str, Callable[[Columns, ResponseLayout], bytes]] = {
    ct.JSON: _encode_json, ct.JSONLINES: _encode_jsonlines, ct.CSV: _encode_csv, ct.RECORDIO: _encode_recordio,
}
PLAIN_LINES = ResponseLayout(csv_cells="python")


def encode(columns: Columns, accept: str, layout: ResponseLayout = DEFAULT_LAYOUT) -> bytes:
    """The response body for `accept` (one of WRITERS)."""
    if layout.plain_lines:
        return _encode_csv(columns, PLAIN_LINES)
    return WRITERS[accept](columns, layout)
