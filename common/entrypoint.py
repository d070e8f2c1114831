"""The image's ENTRYPOINT: `train`, `serve`, `describe`, `inspect`.

The algorithm comes from ALGORITHM (a folder under algorithms/), /opt/ml from
SAGEMAKER_BASE_DIR. `docker run IMAGE train` and
`ALGORITHM=kmeans SAGEMAKER_BASE_DIR=dir python -m common.entrypoint train` behave the same.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys

USAGE = """usage: <image> train | serve | describe | inspect [--format json|npz] [--output FILE] [MODEL_DIR]

  train      train from /opt/ml/input (SAGEMAKER_BASE_DIR overrides /opt/ml), write /opt/ml/model
  serve      answer /ping and /invocations on port 8080 (SAGEMAKER_BIND_TO_PORT overrides)
  describe   print the hyperparameters, channels and metric definitions as JSON
  inspect    print a trained model's arrays (centroids, components, ...) as JSON, or write .npz
Any other command is executed as given. The algorithm is chosen by the ALGORITHM variable."""


def setup_logging(stream: object = sys.stdout) -> None:
    level = os.environ.get("SM_LOG_LEVEL", "20")
    logging.basicConfig(
        level=int(level) if level.isdigit() else logging.INFO,
        format="[%(asctime)s %(levelname)s %(thread)d] %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        stream=stream,  # type: ignore[arg-type]
    )


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in ("train", "serve", "describe", "inspect"):
        os.execvp(command, args)
    # describe and inspect print JSON on stdout: their logs go to stderr.
    setup_logging(sys.stdout if command in ("train", "serve") else sys.stderr)
    from common.imports import lean_scipy

    lean_scipy()
    from common import stopping
    from common.errors import UserError

    try:
        # As PID 1 Python ignores SIGTERM unless it handles it; SageMaker stops a job with SIGTERM.
        if command == "train":
            stopping.install()
        elif command != "serve":
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        code = _run(command, rest)
    except UserError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return 1
    except stopping.Stopped:
        code = stopping.finish()
    if stopping.requested():
        stopping.exit_now(code)  # do not wait for library threads at interpreter shutdown
    return code


def _run(command: str, rest: list[str]) -> int:
    from common.paths import Paths

    name = os.environ.get("ALGORITHM", "")
    paths = Paths.from_env()
    if command == "serve":
        from common.serving.gunicorn import limit_compute_threads, serve, server_settings

        limit_compute_threads(server_settings()["compute_threads"])
        from common.algorithm import load_algorithm
        from common.serving.models import multi_model_enabled

        algorithm = load_algorithm(name)
        multi_model = multi_model_enabled()
        if algorithm.script_mode is not None:  # fetch and install the user's code once, failing clearly here
            from common.script_mode import serving as script_serving

            # A multi-model endpoint has no model yet: each one's code/ is its own, read when it loads.
            if not multi_model or script_serving.locate(paths.model) is not None:
                script_serving.prepare(paths.model, algorithm.script_mode)
        if multi_model:
            logging.getLogger(__name__).info("Serving %s models by name (multi-model endpoint)", name)
        else:
            logging.getLogger(__name__).info("Serving %s from %s", name, paths.model)
        serve(name, paths.model)
        return 0
    from common.algorithm import load_algorithm

    algorithm = load_algorithm(name)
    if command == "train":
        from common.training import run_training

        logging.getLogger(__name__).info("Docker entrypoint called with argument(s): train")
        return run_training(algorithm, paths)
    if command == "describe":
        print(json.dumps(algorithm.describe(), indent=2))
        return 0
    from common.inspect_model import inspect_main

    return inspect_main(algorithm, rest, paths.model)


if __name__ == "__main__":
    code = main()
    # Interpreter shutdown collects every object the run left behind (numba's, XGBoost's: 60-70 ms of a small
    # job). Frozen objects are skipped; atexit handlers and weakref.finalize callbacks still run.
    gc.freeze()
    sys.exit(code)
