"""`rabit_run` as in the SageMaker XGBoost image, on this image's collective (common/cluster/collective.py).

Two rounds, as upstream: every host says whether it has data (ports ALGO_COLLECTIVE_PORT, then + 1, or
first_port / second_port); hosts without data leave with exit code 0; the others form a new collective and
run `exec_fun(**args)` where xgb.train sees it. ALGO_COLLECTIVE_TIMEOUT bounds the wait for a missing peer.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from common.cluster.collective import Cluster, Collective
from common.cluster.connect import connect

log = logging.getLogger(__name__)
HEARTBEAT_S = 1.0


def rabit_run(exec_fun: Callable[..., Any], args: dict[str, Any], include_in_training: bool, hosts: list[str],
              current_host: str, first_port: int | None = None, second_port: int | None = None,
              update_rabit_args: bool = False) -> Any:
    """Run `exec_fun(**args)` on the hosts that have data (with `is_master` added when update_rabit_args)."""
    import xgboost  # noqa: F401 - before connect(), which imports it without scikit-learn: the script may use it
    ordered = tuple(sorted(hosts))
    with connect(Cluster(ordered, current_host), port=first_port) as collective:
        records = collective.allgather({"host": current_host, "include_in_training": bool(include_in_training)})
    training_hosts = tuple(r["host"] for r in records if r["include_in_training"])
    if not include_in_training:
        log.warning("Host %s is not used for distributed training: it has no training data.", current_host)
        sys.exit(0)
    if not training_hosts:
        raise RuntimeError("No hosts received training data.")
    cluster = Cluster(training_hosts, current_host)
    port = second_port or (first_port + 1 if first_port else None)
    with connect(cluster, port=port) as collective:
        if update_rabit_args:
            args.update({"is_master": cluster.is_leader})
        return _run_alive(collective, lambda: exec_fun(**args))


def _run_alive(collective: Collective, function: Callable[[], Any]) -> Any:
    """`collective.run(function)`, telling the watchdog the user's code is alive: it cannot call alive()
    itself, so a round longer than ALGO_COLLECTIVE_TIMEOUT is fine and XGBoost's own timeout catches a
    silent peer."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(HEARTBEAT_S):
            collective.alive()

    threading.Thread(target=beat, name="rabit-run-heartbeat", daemon=True).start()
    try:
        return collective.run(function)
    finally:
        done.set()


def wait_hostname_resolution(sm_hosts: list[str]) -> None:
    """Wait until every host's name resolves (SageMaker's DNS can lag at start-up)."""
    from common.cluster.collective import DEFAULT_TIMEOUT_S
    from common.cluster.xgboost_backend import _address

    for host in sm_hosts:
        _address(host, DEFAULT_TIMEOUT_S)
