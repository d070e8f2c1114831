"""gunicorn's gthread worker, hardened so that slow clients cannot keep /ping from answering in time.

- A new connection takes a thread only once its first bytes arrive; until then it waits in the event loop.
- Reads have total deadlines (`SAGEMAKER_MODEL_SERVER_READ_TIMEOUT` seconds): for the headers once a thread
  picks the request up, then as long again for the body. Late headers close the connection; a late body
  raises TimeoutError inside the application's read, which answers 408. Either way the connection closes.
- A `GET /ping` whose whole header block has arrived, with no body, runs on threads of its own, never queued
  behind uploads or predictions.
- After answering on a kept-alive connection, the thread waits a moment for that connection's next request and
  serves it itself: a client sending requests back to back skips two thread hand-offs per request (the event
  loop's wake-up, the pool's queue), a third of a 1-row request's latency and each a moment a busy machine can
  make it wait (bench/bench_latency.py).
- Before it accepts a connection, a worker serves itself a `GET /ping` and a tiny `POST /invocations` (app.py)
  over a socket pair, through the same threads and code as a client's, WARM_UP_ROUNDS times: the first client's
  request then finds its thread started and its code run and specialised (kmeans, 1 row: the first request
  1.1-1.4 ms instead of 1.2-4.8, the 2nd to 10th 0.8-0.9 ms; bench/bench_cold_start.py).
- The cyclic garbage some libraries leave per request (XGBoost: a class per prediction) is collected after an
  answer is sent, some thousands of objects at a time (about 1 ms): at 50,000 (app.py) the collection is a 10 to
  15 ms pause in the middle of a later request.
"""

from __future__ import annotations

import errno
import gc
import logging
import select
import selectors
import socket
import struct
import time
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

from common.serving.gunicorn import read_timeout_seconds

log = logging.getLogger(__name__)
PEEK_BYTES = 1024
PING_THREADS = 2
NEXT_REQUEST_WAIT_MS = 5  # how long a thread waits for a kept-alive connection's next request
CORK = hasattr(socket, "TCP_CORK")  # Linux
YOUNG_GARBAGE = 5000  # GC-tracked objects allocated and not freed since the last collection
WARM_UP_TIMEOUT_S = 10
# Python specialises a function's bytecode only after it has run several times (3.11: 8): served once, the
# warm-up left the first client's request to run unspecialised code (kmeans, 1 row: 1.36-1.52 ms first vs
# 0.95-1.31 ms after 10 to 50 rounds; bench/bench_cold_start.py).
WARM_UP_ROUNDS = 16


class DeadlineReader:
    """What gunicorn's request parser reads the socket through: recv() never waits past the deadline."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.poll = select.poll()
        self.phase, self.seconds, self.deadline = "headers", 0.0, 0.0
        self.expired = False

    def attach(self, sock: socket.socket) -> None:
        self.sock = sock
        self.poll.register(sock, select.POLLIN)

    def start(self, phase: str, seconds: float) -> None:
        self.phase, self.seconds, self.deadline = phase, seconds, time.monotonic() + seconds
        self.expired = False

    def recv(self, size: int) -> bytes:
        assert self.sock is not None
        try:  # what has arrived already: one system call, as without a deadline
            return self.sock.recv(size, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        remaining = self.deadline - time.monotonic()
        if remaining > 0 and self.poll.poll(remaining * 1000):
            return self.sock.recv(size)
        self.expired = True
        if self.phase == "body":
            raise TimeoutError(f"The request body did not arrive within {self.seconds:g} s; send it without "
                               "pauses or raise SAGEMAKER_MODEL_SERVER_READ_TIMEOUT.")
        return b""  # the parser takes it for a client that went away


class Connection(TConn):  # type: ignore[misc]
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reader = DeadlineReader()
        self.ping = False

    def init(self) -> None:
        fresh = not self.initialized
        super().init()
        if fresh and not self.is_http2:
            self.reader.attach(self.sock)
            self.parser.unreader.sock = self.reader
            # Bounds each send of a response to a client that stops reading; set at the system level, the
            # socket stays blocking for Python, and so sends and reads cost no extra poll().
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", self.cfg.timeout, 0))


class Worker(ThreadWorker):  # type: ignore[misc]
    def init_process(self) -> None:
        self.read_timeout = float(read_timeout_seconds())
        self.ping_pool = futures.ThreadPoolExecutor(PING_THREADS, thread_name_prefix="ping")
        self.waiting: set[Connection] = set()  # connections whose thread waits for their next request
        super().init_process()  # runs the worker until it stops

    def run(self) -> None:
        requests = getattr(self.wsgi, "config", {}).get("WARM_UP_REQUESTS", ())  # app.py
        for _ in range(WARM_UP_ROUNDS):
            for request in requests:
                self.serve_itself(request)
        try:
            super().run()
        finally:
            self.ping_pool.shutdown(wait=False)

    def serve_itself(self, request: bytes) -> None:
        """One request from this worker to itself, over a socket pair, handled as a client's: on a pool thread
        (which the pool starts now, not for the first client), through gunicorn's parser and the app."""
        ours, theirs = socket.socketpair()
        try:
            conn = Connection(self.cfg, ours, ("127.0.0.1", 0), self.sockets[0].getsockname())
            theirs.settimeout(WARM_UP_TIMEOUT_S)
            theirs.sendall(request)
            conn.ping = is_ping(request)
            handled = (self.ping_pool if conn.ping else self.tpool).submit(self.handle, conn)
            answer = b""
            while chunk := theirs.recv(1 << 16):  # to the end: the worker closes its side once the answer is sent
                answer += chunk
            theirs.close()
            handled.result(WARM_UP_TIMEOUT_S)
            log.debug("Warm-up: %s answered %s.", request.split(b"\r\n")[0].decode(), answer.split(b"\r\n")[0].decode())
        except Exception:  # noqa: BLE001 - a warm-up that fails costs the first client a little time, nothing else
            log.warning("The worker's warm-up request failed.", exc_info=True)
        finally:
            theirs.close()
            ours.close()

    def accept(self, listener: socket.socket) -> None:
        """gunicorn's accept, except that the connection waits for its first bytes in the event loop: gunicorn's
        waits in a request thread, up to 5 s."""
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        self.nr_conns += 1
        conn = Connection(self.cfg, sock, client, listener.getsockname())
        conn.timeout = time.monotonic() + self.cfg.keepalive  # pending_conns stays sorted by timeout
        self.pending_conns.append(conn)
        self.poller.register(sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def enqueue_req(self, conn: Connection) -> None:
        conn.ping = is_ping(_peek(conn))
        future = (self.ping_pool if conn.ping else self.tpool).submit(self.handle, conn)
        future.add_done_callback(lambda done: self.method_queue.defer(self.finish_request, conn, done))

    def handle(self, conn: Connection) -> Any:
        while True:
            conn.reader.start("headers", self.read_timeout)
            keepalive = super().handle(conn)
            if not keepalive:
                # Closed here rather than by gunicorn's event loop, where a graceful close waits up to 2 s for a
                # client that does not close its end. A timed-out client or a ping is not worth that wait.
                (util.close if conn.reader.expired or conn.ping else util.close_graceful)(conn.sock)
            if keepalive is not True or not self.next_request_arrives(conn):
                return keepalive  # to the event loop: it closes the connection or waits for its next request

    def next_request_arrives(self, conn: Connection) -> bool:
        """Whether this thread serves the connection's next request too: it arrives within a few milliseconds.
        Never on a ping thread; and at most half the threads wait so, none while another connection waits for a
        thread, so that connections that send back to back cannot keep the others waiting."""
        if conn.ping or conn.is_http2 or not self.alive:
            return False
        if conn.parser.unreader.buf.getvalue():
            return True
        if len(self.waiting) >= self.cfg.threads // 2 or not self.tpool._work_queue.empty():
            return False
        self.waiting.add(conn)  # set.add and set.discard are atomic: no lock
        try:
            return bool(conn.reader.poll.poll(NEXT_REQUEST_WAIT_MS))
        finally:
            self.waiting.discard(conn)

    def handle_request(self, req: Any, conn: Connection) -> bool:
        conn.reader.start("body", self.read_timeout)
        if conn.ping:
            conn.sock.setblocking(False)  # a client that does not read its answers cannot hold a ping thread
        # Corked, the answer's header block and body leave as one segment: sent apart, a client woken by the
        # headers waits again for the body, twice the context switches on a busy machine. Not when the client
        # waits for a 100 Continue before sending its body.
        corked = CORK and not any(name == "EXPECT" for name, _ in req.headers) and _cork(conn.sock, True)
        try:
            keepalive = bool(super().handle_request(req, conn))
        finally:
            if corked:
                _cork(conn.sock, False)
        if gc.get_count()[0] > YOUNG_GARBAGE:  # the answer is sent: the pause falls between requests
            gc.collect(0)
        return keepalive


def _cork(sock: socket.socket, on: bool) -> bool:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, on)
        return True
    except OSError:  # the connection is gone
        return False


def is_ping(head: bytes) -> bool:
    """A whole `GET /ping` header block and no body: serving it cannot wait on the client."""
    end = head.find(b"\r\n\r\n")
    if end < 0 or not head.startswith((b"GET /ping ", b"GET /ping?")):
        return False
    headers = head[:end].lower()
    return b"\ncontent-length:" not in headers and b"\ntransfer-encoding:" not in headers


def _peek(conn: Connection) -> bytes:
    """The start of the next request: bytes the parser read ahead, else what the socket holds."""
    if conn.parser is not None and not conn.is_http2 and (buffered := conn.parser.unreader.buf.getvalue()):
        return bytes(buffered)
    try:
        return conn.sock.recv(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (OSError, ValueError):  # ValueError: a TLS socket takes no flags
        return b""
