"""`inspect`: read a trained model without the image's server and print or save its arrays."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common.algorithm import Algorithm


def inspect_main(algorithm: type[Algorithm], argv: list[str], default_dir: Path) -> int:
    parser = argparse.ArgumentParser(prog="inspect", description="Print a model's arrays.")
    parser.add_argument("model_dir", nargs="?", type=Path, default=default_dir)
    parser.add_argument("--format", choices=("json", "npz"), default="json")
    parser.add_argument("--output", type=Path, help="file to write (default: stdout for json)")
    args = parser.parse_args(argv)
    arrays = algorithm.load(args.model_dir).export()
    if args.format == "npz":
        target = args.output or Path(f"{algorithm.name}-model.npz")
        np.savez(target, **arrays)
        print(f"wrote {target}")
        return 0
    text = json.dumps({name: np.asarray(value).tolist() for name, value in arrays.items()}, indent=1)
    if args.output:
        args.output.write_text(text + "\n")
    else:
        print(text)
    return 0
