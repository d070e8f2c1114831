"""A SageMaker batch transform job, run locally the way SageMaker's agent runs one against the image.

    sm-local transform --algorithm kmeans --model build/job/model --input build/in --output build/out \\
        --content-type text/csv --split-type Line --accept text/csv --assemble-with Line

What the agent does, and so what `run_transform` does:

- starts the image's server (`serve`, gunicorn) with SAGEMAKER_BATCH=true, plus SAGEMAKER_MAX_PAYLOAD_IN_MB,
  SAGEMAKER_BATCH_STRATEGY and SAGEMAKER_MAX_CONCURRENT_TRANSFORMS for the fields the job sets, waits for
  /ping, then asks GET /execution-parameters: a field the job leaves unset takes the container's value,
  else the default (MaxConcurrentTransforms 1, BatchStrategy MultiRecord, MaxPayloadInMB 6);
- reads every file under the input (one file, or a folder, recursively), each on its own: records never
  cross files. CompressionType=Gzip decompresses first;
- splits it: Line on newlines, RecordIO on RecordIO records (whole frames, padding kept, multi-part
  records together), None not at all (the file is one request);
- packs records into mini-batches: MultiRecord as many whole records as fit in MaxPayloadInMB (MB = 2^20
  bytes; 0 means no limit), SingleRecord one each. A record larger than the payload fails its file;
- posts them to /invocations with the job's ContentType and Accept, MaxConcurrentTransforms at a time;
- writes the answers in input order to <output>/<path under the input>.out: AssembleWith=Line ends every
  answer with a newline (adding one only where the answer lacks it), None concatenates them as they are.
  A file whose records or requests fail gets no .out; the other files still do, and the job then fails,
  naming each failed file (the record number, or the mini-batch and its records, and the server's answer).

DataProcessing (InputFilter, JoinSource, OutputFilter) is the agent's, never the container's: records are
parsed outside the container (CSV and JSON Lines a line each, JSON a line each or the whole file with
SplitType=None), filtered before they are posted, and joined and filtered after; see
tools/data_processing.py for the JSONPath subset. Joining needs one answer record per request record:
Accept text/csv or application/jsonlines (a line each), or application/json with one record per request.
"""

from __future__ import annotations

import http.client
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Protocol

from tools import data_processing as dp
from tools.model_server import Answer, ModelServer, ServerError
from tools.transform_job import (
    InputFile,
    MiniBatch,
    RecordTooLarge,
    TransformError,
    TransformJob,
    TransformResult,
    input_files,
    mini_batches,
)


class Endpoint(Protocol):
    """A server, or an inference pipeline of them: what a transform posts its mini-batches to."""

    def invoke(self, body: bytes, content_type: str | None, accept: str | None = None) -> Answer: ...

    def execution_parameters(self) -> dict: ...


# ---- running a job ----------------------------------------------------------------------------------------

def run_transform(algorithm: str, model_dir: Path, input_dir: Path, output_dir: Path, content_type: str | None = None,
                  split_type: str = "None", accept: str | None = None, batch_strategy: str | None = None,
                  max_payload_mb: int | None = None, max_concurrent: int | None = None, assemble_with: str = "None",
                  input_filter: str = "$", output_filter: str = "$", join_source: str = "None",
                  compression_type: str = "None", environment: dict[str, str] | None = None) -> TransformResult:
    """Run a transform job against `algorithm`'s real server over the model in `model_dir`; raises
    TransformError (bad settings, a model that does not load, files that failed: their .out is not written)."""
    job = TransformJob(content_type, split_type, compression_type, accept, batch_strategy, max_payload_mb,
                       max_concurrent, assemble_with, input_filter, output_filter, join_source, dict(environment or {}))
    job.check()
    files = input_files(Path(input_dir), Path(output_dir))
    try:
        with ModelServer(algorithm, Path(model_dir), job.container_environment()) as server:
            return run_job(server, job, files, Path(output_dir))
    except ServerError as exc:
        raise TransformError(str(exc)) from None


def run_job(endpoint: Endpoint, job: TransformJob, files: list[InputFile], output_dir: Path) -> TransformResult:
    """Split, post and assemble every file through `endpoint` (already serving)."""
    started = time.perf_counter()
    job = job.resolved(endpoint.execution_parameters())
    result = TransformResult(settings={"BatchStrategy": job.batch_strategy, "MaxPayloadInMB": job.max_payload_mb,
                                       "MaxConcurrentTransforms": job.max_concurrent})
    writer = Assembler(job, output_dir, result)
    window: deque[tuple[MiniBatch | InputFile, Future | None]] = deque()
    with ThreadPoolExecutor(job.max_concurrent, thread_name_prefix="transform") as pool:
        def post(batch: MiniBatch) -> Answer:
            return endpoint.invoke(batch.payload, job.content_type, job.accept)

        for source in files:
            writer.open(source)
            try:
                for batch in mini_batches(source, job):
                    result.bytes_in += len(batch.payload)
                    window.append((batch, pool.submit(post, batch)))
                    while len(window) > 2 * job.max_concurrent:
                        writer.take(*window.popleft())
            except (RecordTooLarge, TransformError, OSError, ValueError) as exc:
                writer.fail(source, f"{source.relative}: {exc}")
            window.append((source, None))  # the file is complete once everything before this is written
        while window:
            writer.take(*window.popleft())
    result.files = len(files)
    result.seconds = time.perf_counter() - started
    if result.failures:
        raise TransformError(f"{len(result.failures)} of {len(files)} input files failed; no .out for them:\n  "
                             + "\n  ".join(result.failures), result)
    return result


class Assembler:
    """Writes each file's answers, in order, to <output>/<relative>.out (through a .partial file, so that
    a failed file leaves nothing behind)."""

    def __init__(self, job: TransformJob, output_dir: Path, result: TransformResult) -> None:
        self.job, self.output_dir, self.result = job, output_dir, result
        self.handles: dict[InputFile, BinaryIO] = {}
        self.failed: set[InputFile] = set()

    def target(self, source: InputFile) -> Path:
        return self.output_dir / (source.relative + ".out")

    def open(self, source: InputFile) -> None:
        target = self.target(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.handles[source] = open(target.with_name(target.name + ".partial"), "wb")

    def fail(self, source: InputFile, message: str) -> None:
        if source in self.failed:
            return
        self.failed.add(source)
        self.result.failures.append(message)
        handle = self.handles.pop(source, None)
        if handle is not None:
            handle.close()
            Path(handle.name).unlink(missing_ok=True)
        self.target(source).unlink(missing_ok=True)  # an earlier run's

    def take(self, item: MiniBatch | InputFile, future: Future | None) -> None:
        if future is None:
            self.finish(item)  # type: ignore[arg-type]
            return
        batch: MiniBatch = item  # type: ignore[assignment]
        try:
            answer = future.result()
        except (OSError, http.client.HTTPException) as exc:
            self.fail(batch.source, f"{describe(batch)}: the request failed: {exc!r}")
            return
        if batch.source in self.failed:
            return
        if answer.status not in (200, 204):
            message = answer.body.decode("utf-8", "replace").strip()
            self.fail(batch.source, f"{describe(batch)}: the server answered {answer.status}: {message}")
            return
        try:
            body = self.assemble(batch, answer)
        except (dp.PathError, ValueError) as exc:
            self.fail(batch.source, f"{describe(batch)}: {exc}")
            return
        self.handles[batch.source].write(body)
        self.result.records += batch.records
        self.result.mini_batches += 1
        self.result.bytes_out += len(body)

    def assemble(self, batch: MiniBatch, answer: Answer) -> bytes:
        body = answer.body if answer.status == 200 else b""
        if batch.parsed is not None:
            body = processed_output(self.job, batch, body, answer.content_type)
        if self.job.assemble_with == "Line" and body and not body.endswith(b"\n"):
            body += b"\n"
        return body

    def finish(self, source: InputFile) -> None:
        handle = self.handles.pop(source, None)
        if handle is None or source in self.failed:
            return
        handle.close()
        os.replace(handle.name, self.target(source))
        self.result.outputs.append(self.target(source))


def describe(batch: MiniBatch) -> str:
    last = batch.first_record + batch.records - 1
    records = f"record {batch.first_record}" if batch.records == 1 else f"records {batch.first_record}-{last}"
    return f"{batch.source.relative}: mini-batch {batch.number} ({records}, {len(batch.payload):,} bytes)"


def processed_output(job: TransformJob, batch: MiniBatch, body: bytes, content_type: str | None) -> bytes:
    """The answer split into a record per input record, joined with its input and OutputFilter applied,
    one line each in the input's format (joined) or the answer's."""
    answer_media = dp.media_name(content_type) or dp.media_name(job.accept)
    if answer_media not in dp.FORMATS:
        raise ValueError(f"the answer is {content_type}, which DataProcessing cannot split into records "
                         f"(use Accept {', '.join(dp.FORMATS)})")
    outputs = dp.output_records(body, answer_media)
    if len(outputs) != len(batch.parsed or []):
        raise ValueError(f"the answer holds {len(outputs)} records for {batch.records} input records, so they "
                         "cannot be joined; answer one line per record (Accept text/csv or application/jsonlines) "
                         "or send one record per request (BatchStrategy=SingleRecord)")
    out_filter = dp.JsonPath.parse(job.output_filter)
    joined = job.join_source == "Input"
    media = job.input_media if joined else answer_media
    lines = []
    for source, output in zip(batch.parsed or [], outputs):
        value = dp.join(source, output, job.input_media, answer_media) if joined else output
        lines.append(dp.write_record(out_filter.apply(value), media))
    return ("\n".join(lines) + "\n").encode() if lines else b""
