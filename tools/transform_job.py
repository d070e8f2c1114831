"""A batch transform job's settings (CreateTransformJob's fields), its input files, and how they split into
mini-batches: Line on newlines, RecordIO on whole records, None not at all, packed MultiRecord up to
MaxPayloadInMB or SingleRecord (tools/transform.py runs the job)."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from common.data.recordio_writer import MAGIC, MAX_LENGTH
from tools import data_processing as dp

SPLIT_TYPES = ("None", "Line", "RecordIO")
STRATEGIES = ("MultiRecord", "SingleRecord")
ASSEMBLE = ("None", "Line")
COMPRESSION = ("None", "Gzip")
JOIN_SOURCES = ("None", "Input")
DEFAULTS = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6}
MB = 1 << 20
READ_BYTES = 8 * MB


class TransformError(Exception):
    """The job failed: a bad setting, or files whose records or requests failed (each named)."""

    def __init__(self, message: str, result: TransformResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class TransformJob:
    """CreateTransformJob's fields; None where the job leaves one unset."""

    content_type: str | None = None
    split_type: str = "None"
    compression_type: str = "None"
    accept: str | None = None
    batch_strategy: str | None = None
    max_payload_mb: int | None = None
    max_concurrent: int | None = None
    assemble_with: str = "None"
    input_filter: str = "$"
    output_filter: str = "$"
    join_source: str = "None"
    environment: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        for name, value, allowed in (("SplitType", self.split_type, SPLIT_TYPES),
                                     ("CompressionType", self.compression_type, COMPRESSION),
                                     ("BatchStrategy", self.batch_strategy or "MultiRecord", STRATEGIES),
                                     ("AssembleWith", self.assemble_with, ASSEMBLE),
                                     ("JoinSource", self.join_source, JOIN_SOURCES)):
            if value not in allowed:
                raise TransformError(f"{name} {value!r} is not one of {', '.join(allowed)}")
        for name, number in (("MaxPayloadInMB", self.max_payload_mb), ("MaxConcurrentTransforms", self.max_concurrent)):
            if number is not None and number < 0:
                raise TransformError(f"{name} must be 0 or more, got {number}")
        try:
            dp.JsonPath.parse(self.input_filter)
            dp.JsonPath.parse(self.output_filter)
        except dp.PathError as exc:
            raise TransformError(str(exc)) from None
        if self.processes_data:
            for name, value in (("ContentType", self.content_type), ("Accept", self.accept)):
                if value is not None and dp.media_name(value) not in dp.FORMATS:
                    raise TransformError(f"InputFilter, OutputFilter and JoinSource work on CSV, JSON and JSON "
                                         f"Lines only; {name} is {value!r}")
            if self.content_type is None:
                raise TransformError("InputFilter, OutputFilter and JoinSource need a ContentType "
                                     f"({', '.join(dp.FORMATS)})")
            if self.split_type == "RecordIO":
                raise TransformError("InputFilter, OutputFilter and JoinSource need SplitType Line or None")
            if self.split_type == "None" and self.input_media != dp.JSON:
                raise TransformError(f"{self.content_type} records are lines: use SplitType=Line with "
                                     "InputFilter, OutputFilter or JoinSource")

    @property
    def processes_data(self) -> bool:
        return self.join_source == "Input" or not (dp.JsonPath.parse(self.input_filter).is_root
                                                   and dp.JsonPath.parse(self.output_filter).is_root)

    @property
    def input_media(self) -> str:
        return dp.media_name(self.content_type)

    def container_environment(self) -> dict[str, str]:
        """What the agent sets on the container: the job's Environment, SAGEMAKER_BATCH, and the three
        settings the job gives (a setting left unset is not passed, so the container's own choice stands)."""
        env = {**self.environment, "SAGEMAKER_BATCH": "true"}
        if self.max_payload_mb is not None:
            env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(self.max_payload_mb)
        if self.batch_strategy is not None:
            env["SAGEMAKER_BATCH_STRATEGY"] = {"SingleRecord": "SINGLE_RECORD"}.get(self.batch_strategy, "MULTI_RECORD")
        if self.max_concurrent:
            env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(self.max_concurrent)
        return env

    def resolved(self, execution_parameters: dict) -> TransformJob:
        """The job's settings, else the container's /execution-parameters, else SageMaker's defaults."""
        def pick(mine: Any, key: str, kind: type) -> Any:
            if mine is not None and not (key == "MaxConcurrentTransforms" and mine == 0):  # 0: unset
                return mine
            try:
                return kind(execution_parameters[key])
            except (KeyError, TypeError, ValueError):
                return DEFAULTS[key]

        strategy = pick(self.batch_strategy, "BatchStrategy", str)
        strategy = {"MULTI_RECORD": "MultiRecord", "SINGLE_RECORD": "SingleRecord"}.get(strategy, strategy)
        if strategy not in STRATEGIES:
            strategy = DEFAULTS["BatchStrategy"]
        return replace(self, batch_strategy=strategy,
                       max_payload_mb=max(0, pick(self.max_payload_mb, "MaxPayloadInMB", int)),
                       max_concurrent=max(1, pick(self.max_concurrent, "MaxConcurrentTransforms", int)))


@dataclass
class TransformResult:
    files: int = 0
    records: int = 0
    mini_batches: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class MiniBatch:
    source: InputFile
    number: int              # 1-based within its file
    first_record: int        # 1-based record number of its first record
    records: int
    payload: bytes
    parsed: list[Any] | None = None  # the records as parsed, when DataProcessing needs them


class RecordTooLarge(Exception):
    pass


@dataclass(frozen=True)
class InputFile:
    path: Path
    relative: str


def input_files(input_path: Path, output_dir: Path) -> list[InputFile]:
    """Every file under `input_path` (or that one file), as an S3 prefix lists its objects."""
    if input_path.is_file():
        return [InputFile(input_path, input_path.name)]
    if not input_path.is_dir():
        raise TransformError(f"{input_path}: no such input file or folder")
    if output_dir.resolve().is_relative_to(input_path.resolve()):
        raise TransformError(f"the output folder {output_dir} is inside the input {input_path}: keep them apart")
    files = sorted(p for p in input_path.rglob("*") if p.is_file())
    if not files:
        raise TransformError(f"{input_path} holds no files")
    return [InputFile(path, path.relative_to(input_path).as_posix()) for path in files]


# ---- splitting and packing --------------------------------------------------------------------------------

def open_input(source: InputFile, job: TransformJob) -> BinaryIO:
    return gzip.open(source.path, "rb") if job.compression_type == "Gzip" else open(source.path, "rb")  # type: ignore[return-value]


def mini_batches(source: InputFile, job: TransformJob) -> Iterator[MiniBatch]:
    limit = job.max_payload_mb * MB if job.max_payload_mb else None
    multi = job.batch_strategy == "MultiRecord"
    with open_input(source, job) as stream:
        if job.processes_data:
            yield from _pack(source, _processed_records(stream, job), limit, multi, keep_parsed=True)
        elif job.split_type == "None":
            yield from _whole_file(source, stream, limit)
        elif job.split_type == "Line" and multi:
            yield from _line_batches(source, stream, limit)
        elif job.split_type == "Line":
            yield from _pack(source, _lines(stream), limit, multi)
        else:
            yield from _pack(source, _recordio_records(stream), limit, multi)


def _too_large(number: int, size: int, limit: int, what: str = "record") -> RecordTooLarge:
    return RecordTooLarge(f"{what} {number} is {size:,} bytes, larger than MaxPayloadInMB={limit // MB} "
                          f"({limit:,} bytes); raise MaxPayloadInMB or split the record")


def _whole_file(source: InputFile, stream: BinaryIO, limit: int | None) -> Iterator[MiniBatch]:
    payload = stream.read()
    if limit is not None and len(payload) > limit:
        raise RecordTooLarge(f"the file is {len(payload):,} bytes, larger than MaxPayloadInMB={limit // MB} "
                             f"({limit:,} bytes), and SplitType=None sends it whole; split it (SplitType=Line or "
                             "RecordIO) or raise MaxPayloadInMB")
    yield MiniBatch(source, 1, 1, 1, payload)


def _line_batches(source: InputFile, stream: BinaryIO, limit: int | None) -> Iterator[MiniBatch]:
    """MultiRecord over lines without a Python step per line: each mini-batch is the longest run of whole
    lines that fits, cut at the last newline within the limit (no limit: the whole file)."""
    if limit is None:
        payload = stream.read()
        if payload:
            yield MiniBatch(source, 1, 1, _line_count(payload), payload)
        return
    buffer, number, first = b"", 0, 1
    while True:
        chunk = stream.read(max(READ_BYTES, limit))
        buffer += chunk
        while len(buffer) > limit or (not chunk and buffer):
            cut = len(buffer) if len(buffer) <= limit else buffer.rfind(b"\n", 0, limit) + 1
            if cut == 0:
                end = buffer.find(b"\n")
                raise _too_large(first, end + 1 if end >= 0 else len(buffer), limit)
            payload, buffer = buffer[:cut], buffer[cut:]
            number += 1
            records = _line_count(payload)
            yield MiniBatch(source, number, first, records, payload)
            first += records
        if not chunk:
            return


def _line_count(payload: bytes) -> int:
    return payload.count(b"\n") + (not payload.endswith(b"\n"))


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes, Any]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line, None


def _recordio_records(stream: BinaryIO) -> Iterator[tuple[int, bytes, Any]]:
    """Whole RecordIO records: a frame with cflag 0, or the frames from cflag 1 through cflag 3."""
    number, offset, parts = 0, 0, []
    while True:
        header = stream.read(8)
        if not header:
            if parts:
                raise ValueError(f"the file ends inside multi-part record {number + 1}")
            return
        if len(header) < 8:
            raise ValueError(f"record {number + 1} at byte {offset:,}: the file ends inside a RecordIO header")
        magic, word = struct.unpack("<II", header)
        if magic != MAGIC:
            raise ValueError(f"record {number + 1} at byte {offset:,} does not start with the RecordIO magic "
                             f"number (0x{magic:08x}); is this a RecordIO file?")
        length, cflag = word & MAX_LENGTH, word >> 29
        body = stream.read(length + (-length % 4))
        if len(body) < length:
            raise ValueError(f"record {number + 1} at byte {offset:,}: the file ends inside its {length:,} bytes")
        offset += 8 + len(body)
        parts.append(header + body)
        if cflag in (0, 3):
            number += 1
            yield number, b"".join(parts), None
            parts = []


def _processed_records(stream: BinaryIO, job: TransformJob) -> Iterator[tuple[int, bytes, Any]]:
    """Each record parsed, then InputFilter applied: what is posted is the filtered record as a line."""
    media, in_filter = job.input_media, dp.JsonPath.parse(job.input_filter)
    lines = [(1, stream.read())] if job.split_type == "None" else enumerate(stream, start=1)
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = dp.parse_record(line, media)
            payload = line if in_filter.is_root else (dp.write_record(in_filter.apply(record), media) + "\n").encode()
        except (ValueError, dp.PathError) as exc:
            raise ValueError(f"record {number}: {exc}") from None
        yield number, payload, record


def _pack(source: InputFile, records: Iterator[tuple[int, bytes, Any]], limit: int | None, multi: bool,
          keep_parsed: bool = False) -> Iterator[MiniBatch]:
    batch: list[bytes] = []
    parsed: list[Any] = []
    size, first, number = 0, 1, 0

    def emit() -> MiniBatch:
        nonlocal number
        number += 1
        return MiniBatch(source, number, first, len(batch), b"".join(batch), list(parsed) if keep_parsed else None)

    for record_number, payload, record in records:
        if limit is not None and len(payload) > limit:
            raise _too_large(record_number, len(payload), limit)
        if batch and (not multi or (limit is not None and size + len(payload) > limit)):
            yield emit()
            batch, parsed, size = [], [], 0
        if not batch:
            first = record_number
        batch.append(payload)
        parsed.append(record)
        size += len(payload)
    if batch:
        yield emit()
