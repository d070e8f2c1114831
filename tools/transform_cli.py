"""`sm-local transform`: one container (tools/transform.py) or a pipeline of them (tools/pipeline.py)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from tools.local import UsageError
from tools.pipeline import Container, environments, parse_containers, run_pipeline_transform
from tools.transform import run_transform
from tools.transform_job import (
    ASSEMBLE,
    COMPRESSION,
    JOIN_SOURCES,
    MB,
    SPLIT_TYPES,
    STRATEGIES,
    TransformError,
    TransformResult,
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "transform", help="run a batch transform job locally, as SageMaker's agent does",
        description="Run a batch transform job against the real server, as SageMaker's agent runs one: "
                    "split, post, assemble <output>/<file>.out. The flags are CreateTransformJob's fields.")
    target = parser.add_argument_group("the model (one container, or an inference pipeline of several)")
    target.add_argument("--algorithm", help="the image's algorithm (with --model)")
    target.add_argument("--model", type=Path, help="the model folder (a job's model/, or model.tar.gz unpacked)")
    target.add_argument("--container", action="append", default=[], metavar="ALGORITHM=MODEL_DIR",
                        help="a pipeline container, in order (give two or more instead of --algorithm/--model)")
    parser.add_argument("--input", type=Path, required=True, help="TransformInput.DataSource: a file or a folder")
    parser.add_argument("--output", type=Path, required=True, help="TransformOutput.S3OutputPath: a folder")
    parser.add_argument("--content-type", help="TransformInput.ContentType")
    parser.add_argument("--split-type", choices=SPLIT_TYPES, default="None")
    parser.add_argument("--compression-type", choices=COMPRESSION, default="None")
    parser.add_argument("--accept", help="TransformOutput.Accept")
    parser.add_argument("--assemble-with", choices=ASSEMBLE, default="None")
    parser.add_argument("--batch-strategy", choices=STRATEGIES, help="default: the container's, else MultiRecord")
    parser.add_argument("--max-payload-in-mb", type=int, help="default: the container's, else 6")
    parser.add_argument("--max-concurrent-transforms", type=int, help="default: the container's, else 1")
    parser.add_argument("--input-filter", default="$", help="DataProcessing.InputFilter (JSONPath)")
    parser.add_argument("--output-filter", default="$", help="DataProcessing.OutputFilter (JSONPath)")
    parser.add_argument("--join-source", choices=JOIN_SOURCES, default="None")
    parser.add_argument("--env", action="append", default=[], metavar="[N:]KEY=VALUE",
                        help="Environment: every container's, or container N's (1-based) in a pipeline")
    parser.set_defaults(run=command)


def command(args: argparse.Namespace) -> int:
    if args.container and (args.algorithm or args.model):
        raise UsageError("give --algorithm and --model, or --container for each pipeline container, not both")
    if not args.container and not (args.algorithm and args.model):
        raise UsageError("give --algorithm and --model (or --container ALGORITHM=MODEL_DIR for each container)")
    specs = args.container or [f"{args.algorithm}={args.model}"]
    containers: list[Container] = parse_containers(specs)
    shared, per_container = environments(args.env, len(containers))
    settings = dict(content_type=args.content_type, split_type=args.split_type, accept=args.accept,
                    batch_strategy=args.batch_strategy, max_payload_mb=args.max_payload_in_mb,
                    max_concurrent=args.max_concurrent_transforms, assemble_with=args.assemble_with,
                    input_filter=args.input_filter, output_filter=args.output_filter, join_source=args.join_source,
                    compression_type=args.compression_type)
    try:
        if len(containers) == 1:
            result = run_transform(containers[0].algorithm, containers[0].model_dir, args.input, args.output,
                                   environment={**shared, **per_container[0]}, **settings)
        else:
            containers = [replace(c, environment={**shared, **env}) for c, env in zip(containers, per_container)]
            result = run_pipeline_transform(containers, args.input, args.output, **settings)
    except TransformError as exc:
        print(f"sm-local transform: {exc}", file=sys.stderr)
        return 1
    print(summary(result))
    return 0


def summary(result: TransformResult) -> str:
    settings = ", ".join(f"{key}={value}" for key, value in result.settings.items())
    rate = result.bytes_in / MB / result.seconds if result.seconds else 0.0
    return (f"transformed {result.files} file(s): {result.records:,} records in {result.mini_batches:,} "
            f"mini-batches, {result.bytes_in / MB:,.1f} MB in, {result.bytes_out / MB:,.1f} MB out, "
            f"{result.seconds:.1f} s ({rate:,.1f} MB/s; {settings})\n"
            + "\n".join(f"  {path}" for path in result.outputs))

