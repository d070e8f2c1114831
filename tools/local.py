"""`sm-local`: run an image's train or serve with no container, from plain files.

    sm-local sample-data digits build/digits.csv     scikit-learn's digits: label, then 64 pixels
    sm-local train --algorithm kmeans --dir build/job --channel train=build/digits.csv \\
                   --content-type train=text/csv --hp k=10 --hp feature_dim=64 [--input-mode Pipe] [--resume]
    sm-local serve --algorithm kmeans --dir build/job [--port 8080]

`train` prepares the job folder afresh (input/, model/, output/ and checkpoints/ of an earlier run are
removed; `--resume` keeps checkpoints/ so the job continues from them), writes the /opt/ml tree SageMaker
would (config files, input/data/<channel>/), then runs `python -m common.entrypoint` with ALGORITHM and
SAGEMAKER_BASE_DIR set, exactly as the image's ENTRYPOINT does. In Pipe mode it feeds the
<channel>_<epoch> FIFOs. SIGINT and SIGTERM are passed on to the entrypoint (the server stops, training
checkpoints and stops as on SageMaker).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

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


class UsageError(Exception):
    """Bad command-line input: one line on stderr, exit 2."""


def stop_server(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, gunicorn's graceful stop (25 s), then SIGKILL if it is still running after `timeout`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _pairs(option: str, items: list[str], form: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise UsageError(f"{option} takes {form}; got {item!r}")
        if key in pairs:
            raise UsageError(f"{option} {key} is given twice")
        pairs[key] = value
    return pairs


def parse_channels(specs: list[str], types: list[str]) -> dict[str, tuple[list[Path], str | None]]:
    """--channel NAME=PATH (a file, or a folder of files) and --content-type NAME=TYPE."""
    paths = _pairs("--channel", specs, "NAME=PATH (a file or a folder)")
    content_types = _pairs("--content-type", types, "NAME=TYPE, e.g. train=text/csv")
    unknown = sorted(set(content_types) - set(paths))
    if unknown:
        raise UsageError(f"--content-type names {', '.join(unknown)}, which no --channel gives")
    channels: dict[str, tuple[list[Path], str | None]] = {}
    for name, text in paths.items():
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            if not files:
                raise UsageError(f"--channel {name}={text}: the folder holds no files")
        elif path.is_file():
            files = [path]
        else:
            raise UsageError(f"--channel {name}={text}: no such file or folder "
                             "(`sm-local sample-data` writes example data)")
        channels[name] = (files, content_types.get(name))
    return channels


RUN_FOLDERS = ("input", "model", "output")  # what one run writes under --dir
CHECKPOINTS = "checkpoints"  # where the entrypoint checkpoints when no checkpointconfig.json says otherwise


def prepare_job_folder(base: Path, resume: bool, channels: dict[str, tuple[list[Path], str | None]]) -> None:
    """Remove what an earlier run left under `base`, keeping checkpoints/ when resuming."""
    names = RUN_FOLDERS if resume else (*RUN_FOLDERS, CHECKPOINTS)
    stale = [base / name for name in names if (base / name).exists() or (base / name).is_symlink()]
    if stale and not (base / "input" / "config").is_dir():
        raise UsageError(f"--dir {base} holds {', '.join(p.name + '/' for p in stale)} but is not a job folder "
                         "(no input/config/); give a new or empty folder")
    for name, (files, _) in channels.items():
        for path in files:
            if any(path.resolve().is_relative_to(folder.resolve()) for folder in stale):
                raise UsageError(f"--channel {name}: {path} is inside {base}, whose "
                                 f"{', '.join(p.name + '/' for p in stale)} are cleared before each run; "
                                 "keep the data elsewhere")
    if resume and not any((base / CHECKPOINTS).glob("*")):
        raise UsageError(f"--resume: {base / CHECKPOINTS} holds no checkpoint to resume from")
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    if stale:
        print(f"sm-local: removed {', '.join(p.name + '/' for p in stale)} of the previous run in {base}",
              file=sys.stderr)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def wait_passing_on_stops(child: subprocess.Popen) -> tuple[int, int | None]:
    """Wait for `child`, passing each stop signal on as SIGTERM: (exit status, first signal or None).

    SIGTERM is the clean stop of both commands: training checkpoints, writes output/failure and exits 143, as
    on SageMaker; gunicorn stops gracefully (its SIGINT stop can leave a worker that is still loading its
    model running until the 25 s graceful timeout kills it, and SIGHUP would reload it). The child runs in
    a session of its own (start_new_session), so a terminal's Ctrl-C reaches it only through here, once."""
    received: list[int] = []

    def pass_on(signum: int, _frame: object) -> None:
        received.append(signum)
        child.send_signal(signal.SIGTERM)

    previous = {signum: signal.signal(signum, pass_on) for signum in STOP_SIGNALS}
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return (code if code >= 0 else 128 - code), (received[0] if received else None)


def train(args: argparse.Namespace) -> int:
    channels = parse_channels(args.channel, args.content_type)
    hyperparameters = _pairs("--hp", args.hp, "KEY=VALUE")
    prepare_job_folder(args.dir, args.resume, channels)
    write_job(args.dir, hyperparameters, channels, args.input_mode)
    if args.input_mode == "Pipe":
        feed_pipes(args.dir, channels, args.epochs)
    child = run_entrypoint("train", args.algorithm, args.dir, start_new_session=True)
    return wait_passing_on_stops(child)[0]


def serve(args: argparse.Namespace) -> int:
    model = args.dir / "model"
    if not model.is_dir() or not any(model.iterdir()):
        raise UsageError(f"{model} holds no model; train into --dir {args.dir} first (sm-local train)")
    child = run_entrypoint("serve", args.algorithm, args.dir, {"SAGEMAKER_BIND_TO_PORT": str(args.port)},
                           start_new_session=True)
    code, signum = wait_passing_on_stops(child)
    return 130 if signum == signal.SIGINT else code


def write_digits(path: Path) -> str:
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savetxt(path, np.column_stack([digits.target, digits.data]), fmt="%g", delimiter=",")
    return f"{len(digits.target)} rows: the digit (0-9), then its 64 pixels (0-16)"


def write_series(path: Path) -> str:
    steps = np.arange(2000)
    values = 10 * np.sin(2 * np.pi * steps / 100) + np.random.default_rng(0).normal(0, 0.5, len(steps))
    anomalies = [500, 1200, 1700]
    values[anomalies] += 15
    np.savetxt(path, values, fmt="%.4f")
    return f"{len(steps)} steps of a noisy sine (period 100), spikes at steps {', '.join(map(str, anomalies))}"


SAMPLES = {"digits": write_digits, "series": write_series}


def sample_data(args: argparse.Namespace) -> int:
    args.path.parent.mkdir(parents=True, exist_ok=True)
    print(f"wrote {args.path}: {SAMPLES[args.name](args.path)}")
    return 0


def algorithm_names() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "algorithms").glob("*/__init__.py"))


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """train, serve and sample-data (tools/sm_local.py adds transform and pipeline)."""
    train_parser = commands.add_parser("train", help="train into --dir, as a SageMaker training job")
    serve_parser = commands.add_parser("serve", help="serve the model that train left in --dir")
    for command in (train_parser, serve_parser):
        command.add_argument("--algorithm", required=True, choices=algorithm_names())
        command.add_argument("--dir", type=Path, required=True, help="the job's /opt/ml folder")
    train_parser.add_argument("--channel", action="append", default=[], help="NAME=PATH (a file or a folder)")
    train_parser.add_argument("--content-type", action="append", default=[], help="NAME=TYPE, e.g. train=text/csv")
    train_parser.add_argument("--hp", action="append", default=[], help="hyperparameter KEY=VALUE")
    train_parser.add_argument("--input-mode", choices=("File", "Pipe"), default="File")
    train_parser.add_argument("--epochs", type=_positive, default=1, help="Pipe mode: how many epochs to feed")
    train_parser.add_argument("--resume", action="store_true",
                              help="keep --dir's checkpoints/ so training continues from them")
    serve_parser.add_argument("--port", type=int, default=8080)
    samples = commands.add_parser("sample-data", help="write an example data set to train on")
    samples.add_argument("name", choices=sorted(SAMPLES))
    samples.add_argument("path", type=Path, help="the CSV file to write")


COMMANDS = {"train": train, "serve": serve, "sample-data": sample_data}
