"""One "host" of a local cluster, run by test_distributed.py in its own process.

    python distributed_worker.py SCENARIO RESOURCECONFIG REPORT [VICTIM]

Writes a JSON report {"ok", "result" or "error", "elapsed", "stalled"} to REPORT; the
environment carries ALGO_HOST_ADDRESSES, ALGO_COLLECTIVE_PORT and ALGO_COLLECTIVE_TIMEOUT.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.distributed import Cluster, ClusterError, Collective, connect  # noqa: E402

last_progress = time.monotonic()


def operations(c: Collective, victim: str) -> dict[str, Any]:
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
        "gather": c.gather({"host": r}, root=c.world_size - 1),
    }
    c.barrier()
    return result


def loop(c: Collective, victim: str) -> dict[str, Any]:
    """Reduce many times; the victim kills (or freezes) itself after a few rounds."""
    global last_progress
    me = os.environ["TEST_HOST"]
    for i in range(400):
        c.allreduce_sum(np.ones(1000))
        last_progress = time.monotonic()
        if i == 5 and me == victim.removesuffix(":stop"):
            os.kill(os.getpid(), signal.SIGSTOP if victim.endswith(":stop") else signal.SIGKILL)
        time.sleep(0.02)
    return {"rounds": 400}


def fail_on_victim(c: Collective, victim: str) -> dict[str, Any]:
    """The victim raises an ordinary error before the first reduction; the others must not hang."""
    if os.environ["TEST_HOST"] == victim:
        raise ValueError("bad data on this host")
    return {"sum": c.allreduce_sum(np.ones(1)).tolist()}


def twice(c: Collective, victim: str) -> dict[str, Any]:
    return {"first": c.allreduce_sum(np.ones(1)).tolist()}


SCENARIOS = {"operations": operations, "loop": loop, "fail_on_victim": fail_on_victim, "twice": twice}


def main() -> None:
    scenario, config, report_path = sys.argv[1:4]
    victim = sys.argv[4] if len(sys.argv) > 4 else ""
    cluster = Cluster.from_resource_config(Path(config))
    started = time.monotonic()
    report: dict[str, Any] = {"ok": False}
    try:
        with connect(cluster) as collective:
            report["result"] = SCENARIOS[scenario](collective, victim)
        if scenario == "twice":  # a second job in the same process, on the same port
            with connect(cluster) as collective:
                report["result"]["second"] = collective.allreduce_sum(np.ones(1)).tolist()
        report["ok"] = True
    except (ClusterError, ValueError) as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["stalled"] = time.monotonic() - last_progress
    report["elapsed"] = time.monotonic() - started
    Path(report_path).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
