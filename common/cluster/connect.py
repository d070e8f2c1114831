"""`with connect(cluster) as collective:` joins the hosts of a job (one host needs no network).

Environment, read when `connect` is called: ALGO_COLLECTIVE_PORT, ALGO_COLLECTIVE_TIMEOUT (see
common/cluster/collective.py).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from typing import Any

from common.cluster.collective import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT_S,
    PORT_VAR,
    TIMEOUT_VAR,
    Cluster,
    ClusterError,
    Collective,
)

_connections = itertools.count()


def connect(cluster: Cluster, *, port: int | None = None,
            timeout_s: float | None = None) -> contextlib.AbstractContextManager[Collective]:
    """The collective of `cluster` for a `with` block; ClusterError when a peer is missing or fails.

    Meant once per job. Without `port`, the k-th call in a process uses ALGO_COLLECTIVE_PORT + k:
    the previous tracker's port lingers in TIME_WAIT, and a quick host could reach that tracker
    before it exits.
    """
    if cluster.world_size == 1:
        return contextlib.nullcontext(Collective())
    offset = next(_connections) if port is None else 0
    port = _setting(PORT_VAR, port, DEFAULT_PORT, int, 65535) + offset
    from common.cluster.xgboost_backend import connect_hosts

    return connect_hosts(cluster, port, _setting(TIMEOUT_VAR, timeout_s, DEFAULT_TIMEOUT_S, float, 1e9))


def _setting(name: str, explicit: float | None, default: float, kind: type, limit: float) -> Any:
    raw = os.environ.get(name, "").strip() if explicit is None else str(explicit)
    try:
        value = kind(raw) if raw else default
    except ValueError:
        value = -1
    if not (math.isfinite(value) and 0 < value <= limit):
        raise ClusterError(f"{name} must be a positive number up to {limit:g}, got {raw!r}.")
    return value
