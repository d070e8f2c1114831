"""LightGBM's own socket network for several hosts (docs/images/lightgbm.md, "Several hosts").

Every host lists all hosts as `ip:port` in `machines`, in resourceconfig.json's order, and listens on
its own entry's port; LightGBM finds its rank by that port among the local addresses, so several
local "hosts" on 127.0.0.1 work too. Environment, read at training time:
  ALGO_LIGHTGBM_PORT       first port; host i listens on it + i (default 12400)
  ALGO_COLLECTIVE_TIMEOUT  seconds to wait for a peer (default 300), as LightGBM's `time_out` minutes
  ALGO_HOST_ADDRESSES      JSON {"algo-1": "10.0.0.5", ...} instead of DNS (local tests)
"""

from __future__ import annotations

import json
import math
import os
import socket
from typing import Any

from common.cluster.collective import Cluster, Collective
from common.errors import UserError

PORT_VAR, DEFAULT_PORT = "ALGO_LIGHTGBM_PORT", 12400


def params(cluster: Cluster, collective: Collective, tree_learner: str) -> dict[str, Any]:
    """`machines`, ports and timeout for `lgb.train`; `serial` becomes the data-parallel learner."""
    base = _int_env(PORT_VAR, DEFAULT_PORT)
    timeout_s = float(os.environ.get("ALGO_COLLECTIVE_TIMEOUT", "") or 300)
    addresses = _addresses(cluster.hosts)
    _require_every_port_free(cluster, collective, base + cluster.rank)
    machines = ",".join(f"{addresses[host]}:{base + i}" for i, host in enumerate(cluster.hosts))
    return {
        "machines": machines,
        "num_machines": cluster.world_size,
        "local_listen_port": base + cluster.rank,
        "time_out": max(1, math.ceil(timeout_s / 60)),
        "tree_learner": "data" if tree_learner == "serial" else tree_learner,
        "pre_partition": True,
    }


def _require_every_port_free(cluster: Cluster, collective: Collective, port: int) -> None:
    """Every host binds its own port once before LightGBM's network starts, and all hosts learn the outcome.
    Without this, a host whose port is taken fails alone, and its peers connect to whatever holds the
    port: LightGBM then waits forever or crashes (SIGSEGV) on the stranger's bytes."""
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
            taken = ""
        except OSError as error:
            taken = f"{cluster.hosts[cluster.rank]} cannot listen on port {port} ({error.strerror})"
    problems = [problem for problem in collective.allgather(taken) if problem]
    if problems:
        raise UserError(f"LightGBM's network needs port {PORT_VAR} + host index free on every host: "
                        f"{'; '.join(problems)}. Set {PORT_VAR} to a free range.")


def _addresses(hosts: tuple[str, ...]) -> dict[str, str]:
    configured = json.loads(os.environ.get("ALGO_HOST_ADDRESSES", "") or "{}")
    out = {}
    for host in hosts:
        try:
            out[host] = configured.get(host) or socket.gethostbyname(host)
        except OSError:
            raise UserError(f"Host '{host}' from resourceconfig.json does not resolve to an address.") from None
    return out


def _int_env(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65000:
        raise UserError(f"{name} must be a port number, got '{text}'.")
    return int(text)
