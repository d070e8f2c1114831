"""Stalled uploads, trickling bodies and slow headers never keep the real server's /ping past SageMaker's 2 s."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import requests

from common.data.recordio_writer import encode_dense
from common.serving.worker import WARM_UP_ROUNDS
from tests.integration.helpers import serving, train
from tools.local import write_job

PING_DEADLINE = 2.0  # SageMaker fails the endpoint when /ping takes longer
READ_TIMEOUT = 5  # the server's default SAGEMAKER_MODEL_SERVER_READ_TIMEOUT
HEAD = b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: text/csv\r\nContent-Length: 100\r\n\r\n"
ROW = b"1,2,3,4"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    tmp = tmp_path_factory.mktemp("slow-clients")
    data = tmp / "train.rec"
    data.write_bytes(encode_dense(np.random.default_rng(0).standard_normal((200, 4)).astype(np.float32)))
    base = tmp / "ml"
    write_job(base, {"k": "2", "feature_dim": "4", "mini_batch_size": "100"}, {"train": ([data], None)})
    assert train("kmeans", base).returncode == 0
    # One worker: every slow client lands on the same threads, the hardest case for /ping.
    with serving("kmeans", base, workers=1) as (url, _):
        yield url, int(url.rsplit(":", 1)[1])


def _stalled(port: int) -> tuple[float, bytes]:
    """Announces 100 bytes, sends 10, then waits for the server: (seconds, what came back; b"" = closed)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        sock.sendall(HEAD + b"1,2,3,4\n12")
        sock.settimeout(30)
        return time.monotonic() - started, _answer(sock)


def _trickling(port: int, prefix: bytes) -> tuple[float, bytes]:
    """Sends `prefix` then one byte a second, until the server answers or closes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        sock.sendall(prefix)
        sock.settimeout(1.0)
        for _ in range(100):
            try:
                first = sock.recv(4096)
                sock.settimeout(5)
                return time.monotonic() - started, _answer(sock, first)
            except TimeoutError:
                pass
            except OSError:
                break
            try:
                sock.sendall(b"1")
            except OSError:
                break
        sock.settimeout(5)
        return time.monotonic() - started, _answer(sock)


def _answer(sock: socket.socket, first: bytes = b"") -> bytes:
    """Everything the server sends until it closes the connection (b"": closed without an answer)."""
    received = first
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except OSError:
        pass  # reset: closed
    return received


def _in_threads(calls: list[Callable[[], tuple[float, bytes]]]) -> tuple[list[threading.Thread], list]:
    results: list[tuple[float, bytes]] = []
    threads = [threading.Thread(target=lambda c=call: results.append(c()), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    return threads, results


def _invoke(session: requests.Session, url: str) -> int:
    return session.post(url + "/invocations", data=ROW, headers={"Content-Type": "text/csv"}, timeout=30).status_code


@pytest.mark.slow  # the stalled clients hold their connections for ~10 s: make test-slow
@pytest.mark.parametrize("stalled", [8, 32])
def test_ping_answers_in_time_while_clients_stall(server: tuple[str, int], stalled: int) -> None:
    url, port = server
    slow = ([lambda: _stalled(port)] * stalled + [lambda: _trickling(port, HEAD)] * 3
            + [lambda: _trickling(port, b"POST /invocations HTTP/1.1\r\nHost: test\r\n")] * 3)
    threads, outcomes = _in_threads(slow)
    session = requests.Session()
    invocations: list[int] = []
    pings: list[tuple[float, int]] = []
    end = time.monotonic() + 10
    time.sleep(0.3)  # let the slow clients connect and take their threads first
    while time.monotonic() < end:
        started = time.monotonic()
        status = requests.get(url + "/ping", timeout=10).status_code
        pings.append((time.monotonic() - started, status))
        invocations.append(_invoke(session, url))
        time.sleep(0.2)
    for thread in threads:
        thread.join(timeout=30)

    assert len(pings) > 20 and {status for _, status in pings} == {200}
    assert max(seconds for seconds, _ in pings) < PING_DEADLINE, sorted(pings)[-3:]
    assert set(invocations) == {200}
    assert len(outcomes) == len(slow), "a slow client was never answered nor closed"
    for seconds, answer in outcomes:
        assert seconds < 2 * READ_TIMEOUT + 5, (seconds, answer)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer
    body_timeouts = [answer for _, answer in outcomes if answer]
    assert len(body_timeouts) >= stalled
    assert all(answer.endswith(b"The request body did not arrive within 5 s; send it without pauses or raise "
                               b"SAGEMAKER_MODEL_SERVER_READ_TIMEOUT.\n") for answer in body_timeouts)
    assert _invoke(session, url) == 200


def test_chunked_body_and_pipelined_ping(server: tuple[str, int]) -> None:
    url, port = server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "text/csv")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    for piece in (b"1,2,", b"3,4\n5,6,7,8"):
        connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    connection.send(b"0\r\n\r\n")
    response = connection.getresponse()
    assert response.status == 200 and response.read().count(b"closest_cluster") == 2
    assert len(requests.post(url + "/invocations", data=iter([b"1,2,3,4\n", b"5,6,7,8"]),
                             headers={"Content-Type": "text/csv", "Accept": "text/csv"}).text.splitlines()) == 2
    with socket.create_connection(("127.0.0.1", port)) as sock:  # a ping, then an invocation, on one connection
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\nPOST /invocations HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Type: text/csv\r\nContent-Length: 7\r\nConnection: close\r\n\r\n" + ROW)
        sock.settimeout(10)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 2 and b"closest_cluster" in received


def test_each_worker_serves_itself_pings_and_invocations_before_its_first_client(tmp_path) -> None:
    data = tmp_path / "train.rec"
    data.write_bytes(encode_dense(np.random.default_rng(1).standard_normal((100, 4)).astype(np.float32)))
    write_job(tmp_path, {"k": "2", "feature_dim": "4"}, {"train": ([data], None)})
    assert train("kmeans", tmp_path).returncode == 0
    with serving("kmeans", tmp_path, workers=2, extra_env={"SM_LOG_LEVEL": "10"}) as (url, server):
        assert requests.post(url + "/invocations", data=ROW, headers={"Content-Type": "text/csv"}).ok
    log = server.stdout.read().decode()
    rounds = 2 * WARM_UP_ROUNDS  # each of the 2 workers
    assert log.count("Warm-up: GET /ping HTTP/1.1 answered HTTP/1.1 200 OK.") == rounds, log[-3000:]
    one_column = "Warm-up: POST /invocations HTTP/1.1 answered HTTP/1.1 400 Bad Request."  # the model has 4
    assert log.count(one_column) == rounds, log[-3000:]
    assert "warm-up request failed" not in log
