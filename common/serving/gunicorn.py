"""Runs the Flask app under gunicorn, configured from SageMaker's environment variables.

Workers default to the number of CPUs; each worker gets cpus // workers compute
threads (BLAS, OpenMP, numba, FAISS), so workers x threads never exceeds the cores.
Models are loaded in each worker after the fork (no preload): fork after BLAS or
OpenMP initialisation can hang.

Each worker (common/serving/worker.py) has more threads reading requests than it lets predict at once
(SAGEMAKER_MODEL_SERVER_THREADS), so slow uploads do not hold up predictions, and /ping has threads of its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

READ_THREADS = 64  # started on demand; a slow client holds one for at most twice the read timeout
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def read_timeout_seconds() -> int:
    """How long a client has to send a request's headers, and then as long again for its body."""
    return _int_env("SAGEMAKER_MODEL_SERVER_READ_TIMEOUT", 5)


def server_settings() -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    workers = _int_env("SAGEMAKER_MODEL_SERVER_WORKERS", cpus)
    predictions = _int_env("SAGEMAKER_MODEL_SERVER_THREADS", 4)
    return {
        "bind": f"0.0.0.0:{_int_env('SAGEMAKER_BIND_TO_PORT', 8080)}",
        "workers": workers,
        "worker_class": "common.serving.worker.Worker",
        "threads": max(READ_THREADS, 2 * predictions),
        "timeout": _int_env("SAGEMAKER_MODEL_SERVER_TIMEOUT", 60),
        "graceful_timeout": 25,  # SageMaker sends SIGKILL 30 s after SIGTERM
        "keepalive": 75,
        "preload_app": False,
        "accesslog": None,
        "control_socket_disable": True,  # gunicorn 27's control socket: nothing uses it here
        "compute_threads": max(1, cpus // workers),
        "concurrent_predictions": predictions,
    }


def limit_compute_threads(threads: int) -> None:
    """Must run before numpy/numba start their pools; user settings win.

    OpenMP threads sleep as soon as a parallel region ends (PASSIVE): by default libgomp's threads spin
    for about 8 ms of CPU after each FAISS search or BLAS call, on the cores the next request needs to
    receive and parse its body (bench/bench_knn.py)."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def serve(algorithm_name: str, model_dir: Path) -> None:
    settings = server_settings()
    limit_compute_threads(settings.pop("compute_threads"))
    predictions = settings.pop("concurrent_predictions")
    from gunicorn.app.base import BaseApplication

    from common.serving.model_set import Registry
    from common.serving.models import multi_model_enabled

    registry = Registry.create() if multi_model_enabled() else None  # before the fork: every worker shares it

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from common.algorithm import load_algorithm
            from common.serving.app import create_app

            return create_app(load_algorithm(algorithm_name), model_dir, predictions, registry, settings["workers"])

    Application().run()
