"""`sm-local`: run an image's train or serve with no container, from plain files.

    sm-local train --algorithm kmeans --dir /tmp/job --channel train=data.csv --content-type train=text/csv \\
                   --hp k=10 --hp feature_dim=64 [--input-mode Pipe] [--hosts 2]
    sm-local serve --algorithm kmeans --dir /tmp/job [--port 8080]

It builds the /opt/ml tree SageMaker would (config files, input/data/<channel>/),
then runs `python -m common.entrypoint` with ALGORITHM and SAGEMAKER_BASE_DIR set,
exactly as the image's ENTRYPOINT does. In Pipe mode it feeds the <channel>_<epoch> FIFOs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def write_job(base: Path, hyperparameters: dict[str, str], channels: dict[str, tuple[list[Path], str | None]],
              input_mode: str = "File", host: str = "algo-1", hosts: list[str] | None = None,
              distribution: str | dict[str, str] = "FullyReplicated") -> None:
    """Lay out input/config and input/data for one host (File mode copies the files).

    `distribution` is one S3DistributionType for every channel or a {channel: type} map
    (channels it does not name are FullyReplicated)."""
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    data_config = {}
    for name, (files, content_type) in channels.items():
        shard = distribution if isinstance(distribution, str) else distribution.get(name, "FullyReplicated")
        entry = {"TrainingInputMode": input_mode, "S3DistributionType": shard, "RecordWrapperType": "None"}
        if content_type:
            entry["ContentType"] = content_type
        data_config[name] = entry
        if input_mode == "File":
            target = base / "input" / "data" / name
            target.mkdir(parents=True, exist_ok=True)
            for path in files:
                shutil.copy(path, target / path.name)
    (config / "inputdataconfig.json").write_text(json.dumps(data_config))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": host, "hosts": hosts or [host], "network_interface_name": "eth0"}))


def feed_pipes(base: Path, channels: dict[str, tuple[list[Path], str | None]], epochs: int) -> list[threading.Thread]:
    """One writer thread per channel: for each epoch make <channel>_<epoch> and stream the files into it."""
    data = base / "input" / "data"
    data.mkdir(parents=True, exist_ok=True)

    def writer(name: str, files: list[Path]) -> None:
        for epoch in range(epochs):
            fifo = data / f"{name}_{epoch}"
            os.mkfifo(fifo)
            try:
                with open(fifo, "wb") as out:
                    for path in files:
                        with open(path, "rb") as src:
                            shutil.copyfileobj(src, out, 1 << 20)
            except BrokenPipeError:
                pass  # the reader stopped early, which Pipe mode allows

    threads = [threading.Thread(target=writer, args=(n, f), daemon=True) for n, (f, _) in channels.items()]
    for thread in threads:
        thread.start()
    return threads


def entrypoint_env(algorithm: str, base: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, ALGORITHM=algorithm, SAGEMAKER_BASE_DIR=str(base))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


def run_entrypoint(command: str, algorithm: str, base: Path, extra_env: dict[str, str] | None = None,
                   **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "common.entrypoint", command],
                            env=entrypoint_env(algorithm, base, extra_env), **popen)  # type: ignore[call-overload]


def _parse_channels(specs: list[str], types: list[str]) -> dict[str, tuple[list[Path], str | None]]:
    content_types = dict(item.split("=", 1) for item in types)
    channels: dict[str, tuple[list[Path], str | None]] = {}
    for spec in specs:
        name, _, path_text = spec.partition("=")
        path = Path(path_text)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        channels[name] = (files, content_types.get(name))
    return channels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sm-local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("train", "serve"))
    parser.add_argument("--algorithm", required=True)
    parser.add_argument("--dir", type=Path, required=True, help="the job's /opt/ml folder")
    parser.add_argument("--channel", action="append", default=[], help="NAME=PATH (a file or a folder)")
    parser.add_argument("--content-type", action="append", default=[], help="NAME=TYPE, e.g. train=text/csv")
    parser.add_argument("--hp", action="append", default=[], help="hyperparameter KEY=VALUE")
    parser.add_argument("--input-mode", choices=("File", "Pipe"), default="File")
    parser.add_argument("--epochs", type=int, default=1, help="Pipe mode: how many epochs to feed")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_entrypoint("serve", args.algorithm, args.dir,
                              {"SAGEMAKER_BIND_TO_PORT": str(args.port)}).wait()
    channels = _parse_channels(args.channel, args.content_type)
    hyperparameters = dict(item.split("=", 1) for item in args.hp)
    write_job(args.dir, hyperparameters, channels, args.input_mode)
    if args.input_mode == "Pipe":
        feed_pipes(args.dir, channels, args.epochs)
    return run_entrypoint("train", args.algorithm, args.dir).wait()


if __name__ == "__main__":
    sys.exit(main())
