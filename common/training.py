"""The `train` command: read /opt/ml/input/config, run the algorithm, save the model, report failure."""

from __future__ import annotations

import logging
import time
import traceback

from common import stopping
from common.algorithm import Algorithm, TrainingJob
from common.channels import DataChannel, parse_input_data_config
from common.checkpoints import Checkpoints, data_files
from common.cluster.collective import Cluster, ClusterError
from common.cluster.connect import connect
from common.data import csv_numpy
from common.errors import UserError
from common.hyperparameters import parse_hyperparameters
from common.metrics import MetricsEmitter
from common.paths import Paths, read_json_object

log = logging.getLogger(__name__)



def prepare_job(algorithm: type[Algorithm], paths: Paths) -> tuple[object, dict[str, DataChannel], Cluster]:
    """Parse the three config files; every problem of hyperparameters and channels at once."""
    problems: list[str] = []
    hyperparameters = channels = None
    raw_hp = read_json_object(paths.hyperparameters, 'like {"k": "10"}')
    log.info("Reading provided configuration from %s: %s", paths.hyperparameters, raw_hp)
    try:
        hyperparameters = parse_hyperparameters(algorithm.Hyperparameters, raw_hp)
    except UserError as exc:
        problems.append(exc.message)
    try:
        configs = parse_input_data_config(read_json_object(paths.input_data_config, 'like {"train": {}}'),
                                          algorithm.channels, algorithm.default_content_type)
        channels = {name: DataChannel(cfg, paths.data) for name, cfg in configs.items()}
    except UserError as exc:
        problems.append(exc.message)
    if problems:
        raise UserError(" ".join(problems))
    cluster = Cluster.from_resource_config(paths.resource_config)
    return hyperparameters, channels, cluster  # type: ignore[return-value]


def run_training(algorithm: type[Algorithm], paths: Paths) -> int:
    """Train; returns the process exit code (0 ok, 1 user error, 2 anything else, 143 stopped by SIGTERM; a user
    script's own code)."""
    started = time.time()
    stopping.register(paths)
    csv_numpy.grant()  # a small job's CSV is parsed without importing numba
    try:
        if algorithm.script_mode is not None:
            from common.script_mode import training as script_training

            code = script_training.run_if_requested(paths, algorithm.script_mode)
            if code is not None:
                return code
        hyperparameters, channels, cluster = prepare_job(algorithm, paths)
        checkpoints = Checkpoints(paths.checkpoints, data=data_files(channels))
        stopping.register(paths, checkpoints)
        log.info("Final configuration: %s", hyperparameters)
        if algorithm.metrics_note:
            log.info("Metrics: %s", algorithm.metrics_note)
        metrics = MetricsEmitter(cluster.current_host)
        with connect(cluster) as collective:
            job = TrainingJob(
                hyperparameters=hyperparameters,
                channels=channels,
                paths=paths,
                cluster=cluster,
                collective=collective,
                metrics=metrics,
                checkpoints=checkpoints,
                definitions={m.name: m for m in algorithm.metrics},
            )
            model = algorithm.train(job)
            if model is not None and cluster.is_leader:
                paths.model.mkdir(parents=True, exist_ok=True)
                model.save(paths.model)
    except stopping.Stopped:
        return stopping.finish()  # the failure file naming the last checkpoint, exit code 143
    except UserError as exc:
        return _fail(paths, f"ClientError: {exc.message}", 1)
    except ClusterError as exc:
        return _fail(paths, f"AlgorithmError: {exc}", 2)
    except Exception as exc:  # noqa: BLE001 - every other failure is ours
        log.error("Training failed:\n%s", traceback.format_exc())
        return _fail(paths, f"AlgorithmError: {type(exc).__name__}: {exc}", 2)
    log.info("Training finished in %.2f s, peak memory %.0f MB.", time.time() - started, peak_memory_mb())
    return 0


def peak_memory_mb() -> float:
    """This process's resident-set high-water mark since exec (VmHWM; ru_maxrss also counts the parent's
    pages inherited before exec, which inflates it for a child of a big process)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fail(paths: Paths, message: str, code: int) -> int:
    log.error("%s", message)
    paths.write_failure(message)
    return code
