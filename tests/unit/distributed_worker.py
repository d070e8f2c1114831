"""One "host" of a local cluster, started by test_distributed.py as its own process.

    python distributed_worker.py SCENARIO RESOURCECONFIG REPORT [VICTIM]

The environment carries ALGO_HOST_ADDRESSES, ALGO_COLLECTIVE_PORT and ALGO_COLLECTIVE_TIMEOUT.
Writes {"ok", "result" | "error", "stalled"} as JSON to REPORT; "stalled" is the time from the
last collective call that worked to the error, cleanup included.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.modules["sklearn"] = None  # xgboost imports scikit-learn when installed: 1 s per host these tests skip

from common.cluster.collective import Cluster, ClusterError, Collective  # noqa: E402
from common.cluster.connect import connect  # noqa: E402

last_success = time.monotonic()


def operations(c: Collective, me: str, victim: str) -> dict[str, Any]:
    r = c.rank
    result = {
        "rank": r,
        "sum32": c.allreduce_sum(np.full((2, 3), r + 1, np.float32)).tolist(),
        "sum64": c.allreduce_sum(np.array([0.5 * r, 1e300 if r == 0 else 0.0])).tolist(),
        "sum_int": c.allreduce_sum(np.array([r, 2**40], np.int64)).tolist(),
        "max": c.allreduce_max(np.array([r, -r], np.int64)).tolist(),
        "min": c.allreduce_min(np.array([r, -r], np.float64)).tolist(),
        "bcast_array": c.broadcast(np.arange(4.0) if r == 1 else None, root=1).tolist(),
        "bcast_dict": c.broadcast({"centres": [1, 2], "name": "k"} if r == 0 else None),
        "bcast_none": c.broadcast(None),
        "allgather": [a.tolist() for a in c.allgather(np.arange(r * 3, dtype=np.float32))],
        "gather": c.gather({"rank": r}, root=c.world_size - 1),
    }
    c.barrier()
    return result


def loop(c: Collective, me: str, victim: str) -> dict[str, Any]:
    """Reduce 8 MB over and over (the test kills or freezes one host while data is in flight)."""
    global last_success
    for i in range(300):
        c.allreduce_sum(np.ones(2_000_000, np.float32))
        last_success = time.monotonic()
        print(f"round {i}", flush=True)
    return {}


def raise_on_victim(c: Collective, me: str, victim: str) -> dict[str, Any]:
    """An ordinary error on one host (bad data, say) before the first collective call."""
    if me == victim:
        raise ValueError("bad data on this host")
    return {"sum": c.allreduce_sum(np.ones(1)).tolist()}


SCENARIOS = {"operations": operations, "loop": loop, "raise_on_victim": raise_on_victim}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    scenario, config, report_path = sys.argv[1:4]
    victim = sys.argv[4] if len(sys.argv) > 4 else ""
    cluster = Cluster.from_resource_config(Path(config))
    report: dict[str, Any] = {"ok": False}
    try:
        with connect(cluster) as collective:
            report["result"] = SCENARIOS[scenario](collective, cluster.current_host, victim)
        if scenario == "operations":  # a second job in the same process (it gets the next port)
            with connect(cluster) as collective:
                report["result"]["second_job"] = collective.allreduce_sum(np.ones(1)).tolist()
        report["ok"] = True
    except (ClusterError, ValueError) as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["stalled"] = time.monotonic() - last_success
    Path(report_path).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
