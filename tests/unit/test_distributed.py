"""common.cluster.collective: one host without network; several local processes as hosts on 127.0.0.1."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.cluster import xgboost_backend
from common.cluster.collective import Cluster, ClusterError
from common.cluster.connect import connect
from common.cluster.xgboost_backend import GRACE_S, _XGBoostCollective, _XGBoostThread

WORKER = Path(__file__).with_name("distributed_worker.py")


def free_port() -> int:
    """A free port, the next one free too (a second job in a process uses it), both below the
    ephemeral range, where the OS would otherwise hand them out to other sockets meanwhile."""
    while True:
        port = random.randrange(20000, 32000, 2)
        try:
            for p in (port, port + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue


class LocalCluster:
    """`n` hosts algo-1..algo-n, each a process with its own resourceconfig.json, on 127.0.0.1."""

    def __init__(self, root: Path, n: int, timeout_s: float) -> None:
        self.root, self.timeout_s = root, timeout_s
        self.hosts = [f"algo-{i}" for i in range(1, n + 1)]
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "ALGO_HOST_ADDRESSES": json.dumps({h: "127.0.0.1" for h in self.hosts}),
                    "ALGO_COLLECTIVE_PORT": str(free_port()), "ALGO_COLLECTIVE_TIMEOUT": str(timeout_s)}

    def start(self, scenario: str, victim: str = "", missing: tuple[str, ...] = ()) -> LocalCluster:
        for host in self.hosts:
            if host in missing:
                continue
            folder = self.root / host
            folder.mkdir(parents=True)
            (folder / "resourceconfig.json").write_text(json.dumps(
                {"current_host": host, "hosts": self.hosts, "current_group_name": "homogeneousCluster"}))
            with open(folder / "log.txt", "w") as log:
                self.procs[host] = subprocess.Popen(
                    [sys.executable, str(WORKER), scenario, str(folder / "resourceconfig.json"),
                     str(folder / "report.json"), victim], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def reports(self, within_s: float, skip: str = "") -> dict[str, dict[str, Any]]:
        """Each host's report, once every host but `skip` exited (cleanly) within `within_s`."""
        deadline = time.monotonic() + within_s
        reports = {}
        for host, proc in self.procs.items():
            if host == skip:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{host} still ran after {within_s} s:\n{self.log(host)}")
            assert proc.returncode == 0, f"{host} exited with {proc.returncode}:\n{self.log(host)}"
            reports[host] = json.loads((self.root / host / "report.json").read_text())
        return reports

    def signal_when(self, host: str, text: str, signum: int, within_s: float = 30) -> None:
        """Send `signum` to `host` as soon as its log shows `text`."""
        deadline = time.monotonic() + within_s
        while text not in self.log(host):
            assert time.monotonic() < deadline and self.procs[host].poll() is None, self.log(host)
            time.sleep(0.01)
        self.procs[host].send_signal(signum)

    def log(self, host: str) -> str:
        return (self.root / host / "log.txt").read_text()[-3000:]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()  # SIGKILL also ends a stopped process
            proc.wait()


@pytest.fixture
def local_cluster(tmp_path):
    clusters: list[LocalCluster] = []

    def make(n: int, timeout_s: float) -> LocalCluster:
        clusters.append(LocalCluster(tmp_path / f"cluster{len(clusters)}", n, timeout_s))
        return clusters[-1]

    yield make
    for cluster in clusters:
        cluster.close()


def test_cluster_from_resource_config(tmp_path):
    assert Cluster.from_resource_config(tmp_path / "missing.json") == Cluster(("algo-1",), "algo-1")
    path = tmp_path / "resourceconfig.json"
    path.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-10", "algo-2"],
                                "current_group_name": "g", "current_instance_group": "g",
                                "network_interface_name": "eth0", "instance_groups": []}))
    cluster = Cluster.from_resource_config(path)
    assert cluster.hosts == ("algo-1", "algo-10", "algo-2")
    assert (cluster.rank, cluster.world_size, cluster.leader, cluster.is_leader) == (2, 3, "algo-1", False)
    assert Cluster(("algo-1", "algo-2"), "algo-1").is_leader


@pytest.mark.parametrize("content", ["{", '{"hosts": ["algo-1"]}', '{"current_host": "algo-3", "hosts": ["algo-1"]}',
                                     '{"current_host": "algo-1", "hosts": "algo-1"}'])
def test_bad_resource_config(tmp_path, content):
    path = tmp_path / "resourceconfig.json"
    path.write_text(content)
    with pytest.raises(ClusterError):
        Cluster.from_resource_config(path)


def test_single_host_needs_no_network_and_no_settings(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a single host must not touch the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setenv("ALGO_COLLECTIVE_PORT", "not a port")
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    with connect(Cluster(("algo-1",), "algo-1")) as c:
        assert (c.rank, c.world_size, c.is_leader) == (0, 1, True)
        for reduce in (c.allreduce_sum, c.allreduce_max, c.allreduce_min):
            out = reduce(data)
            assert out is not data and out.dtype == data.dtype and np.array_equal(out, data)
        assert c.broadcast({"a": 1}) == {"a": 1}
        assert c.allgather(np.ones(2))[0].tolist() == [1.0, 1.0]
        assert c.gather("x") == ["x"]
        c.barrier()
        with pytest.raises(TypeError):
            c.allreduce_sum(np.array(["text"]))
        with pytest.raises(ValueError):
            c.broadcast(1, root=1)


@pytest.mark.parametrize("env", [{"ALGO_COLLECTIVE_PORT": "99999"}, {"ALGO_COLLECTIVE_TIMEOUT": "0"},
                                 {"ALGO_COLLECTIVE_TIMEOUT": "soon"}, {"ALGO_HOST_ADDRESSES": '{"algo-2": "x"}'}])
def test_bad_settings_fail_before_any_waiting(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ClusterError, match=next(iter(env))):
        with connect(Cluster(("algo-1", "algo-2"), "algo-2")):
            pass


@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", [2, 3])
def test_all_operations_across_local_hosts(local_cluster, n):
    reports = local_cluster(n, timeout_s=20).start("operations").reports(within_s=40)
    for rank, host in enumerate(sorted(reports, key=lambda h: int(h.split("-")[1]))):
        assert reports[host]["ok"], reports[host]
        result = reports[host]["result"]
        assert result["rank"] == rank
        assert result["sum32"] == [[n * (n + 1) / 2] * 3] * 2
        assert result["sum64"] == [0.5 * n * (n - 1) / 2, 1e300]
        assert result["sum_int"] == [n * (n - 1) // 2, n * 2**40]
        assert result["max"] == [n - 1, 0] and result["min"] == [0, -(n - 1)]
        assert result["bcast_array"] == [0.0, 1.0, 2.0, 3.0]
        assert result["bcast_dict"] == {"centres": [1, 2], "name": "k"} and result["bcast_none"] is None
        assert result["allgather"] == [np.arange(r * 3).tolist() for r in range(n)]
        assert result["gather"] == ([{"rank": r} for r in range(n)] if rank == n - 1 else None)
        assert result["second_job"] == [n]


@pytest.mark.timeout(60)
def test_missing_peer_or_leader_fails_within_the_timeout(local_cluster):
    timeout = 4
    no_peer = local_cluster(3, timeout).start("operations", missing=("algo-3",))
    no_leader = local_cluster(2, timeout).start("operations", missing=("algo-1",))
    startup = 10  # interpreters, imports and the tracker's process on a busy 2-core machine
    for host, report in {**no_peer.reports(timeout + startup), **no_leader.reports(timeout + startup)}.items():
        assert not report["ok"], host
        assert "ClusterError" in report["error"] and "ALGO_COLLECTIVE_TIMEOUT=4" in report["error"]
        assert "algo-1" in report["error"]
    assert "could not form the collective" in no_peer.reports(0)["algo-2"]["error"]
    assert "for the leader algo-1 to open the collective tracker" in no_leader.reports(0)["algo-2"]["error"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("victim", "signum"), [
    pytest.param("algo-3", signal.SIGKILL, id="kill-algo-3"),
    pytest.param("algo-1", signal.SIGKILL, id="kill-leader"),
    pytest.param("algo-2", signal.SIGSTOP, id="freeze-algo-2"),
])
def test_dead_or_frozen_peer_fails_the_others_within_the_timeout(local_cluster, victim, signum):
    timeout = 4
    cluster = local_cluster(3, timeout).start("loop")
    cluster.signal_when(victim, "round 5", signum)  # most likely in the middle of a transfer
    reports = cluster.reports(within_s=timeout + GRACE_S + 15, skip=victim)
    assert set(reports) == set(cluster.hosts) - {victim}
    for host, report in reports.items():
        assert not report["ok"] and report["error"].startswith("ClusterError: allreduce_sum failed on " + host)
        # A kill is noticed at once, unless XGBoost hangs (about 1 in 10): then the watchdog answers.
        assert report["stalled"] < timeout + GRACE_S + 2, report
        if signum == signal.SIGSTOP:  # no EOF from a frozen host: the timeout notices it
            assert report["stalled"] > timeout - 1, report


def test_watchdog_gives_up_on_a_call_that_never_returns(monkeypatch):
    monkeypatch.setattr(xgboost_backend, "GRACE_S", 0.0)
    thread = _XGBoostThread()
    collective = _XGBoostCollective(Cluster(("algo-1", "algo-2"), "algo-1"), timeout_s=0.2, thread=thread)
    started = time.monotonic()
    with pytest.raises(ClusterError, match="did not return within 0.2 s"):
        collective._call("allreduce_sum", time.sleep, 3)
    assert time.monotonic() - started < 5 and thread.stuck
    with pytest.raises(ClusterError, match="after an earlier failure"):
        collective.barrier()


@pytest.mark.timeout(60)
def test_an_error_on_one_host_fails_the_others_quickly(local_cluster):
    reports = local_cluster(3, timeout_s=30).start("raise_on_victim", victim="algo-2").reports(within_s=20)
    assert reports["algo-2"]["error"] == "ValueError: bad data on this host"
    for host in ("algo-1", "algo-3"):
        assert reports[host]["error"].startswith(f"ClusterError: allreduce_sum failed on {host}")


@pytest.mark.timeout(60)
def test_unresolvable_leader_fails_within_the_timeout(monkeypatch):
    monkeypatch.delenv("ALGO_HOST_ADDRESSES", raising=False)
    started = time.monotonic()
    with pytest.raises(ClusterError, match="Cannot resolve the host name 'no-such-host.invalid'"):
        with connect(Cluster(("no-such-host.invalid", "algo-2"), "algo-2"), timeout_s=1):
            pass
    assert time.monotonic() - started < 10


@pytest.mark.timeout(60)
def test_busy_port_on_the_leader_is_named(monkeypatch):
    monkeypatch.setenv("ALGO_HOST_ADDRESSES", json.dumps({"algo-1": "127.0.0.1", "algo-2": "127.0.0.1"}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ClusterError, match=f"127.0.0.1:{port} .*ALGO_COLLECTIVE_PORT.*Address already in use"):
            with connect(Cluster(("algo-1", "algo-2"), "algo-1"), port=port, timeout_s=20):
                pass
