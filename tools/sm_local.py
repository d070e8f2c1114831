"""The `sm-local` command: train, serve, sample-data (tools/local.py), transform (tools/transform.py) and
pipeline (tools/pipeline.py)."""

from __future__ import annotations

import argparse
import sys

from tools import local, pipeline, transform_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sm-local", description=local.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    local.add_commands(commands)
    transform_cli.add_parser(commands)
    pipeline.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return (local.COMMANDS.get(args.command) or args.run)(args)
    except local.UsageError as exc:
        print(f"sm-local {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
