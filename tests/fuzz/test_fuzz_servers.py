"""Every image's real server (`python -m common.entrypoint serve`, gunicorn) against malformed bodies.

For each image a tiny model is trained through the real entrypoint, the server is started on a free port, and
FUZZ_BODIES (default 10,000) bodies per request content type the image accepts are sent over one keep-alive
connection, while a thread probes /ping every 200 ms and watches the gunicorn master's workers.
Asserted per image and content type: no 5xx, no dropped connection, no worker death, /ping always under 2 s.
5xx bodies are replayed through `invoke` in a child process, grouped by where they raise, and shrunk, so the
report names a minimal body for each failure. The table goes to the terminal and to $FUZZ_REPORT
(default /tmp/fuzz-report.json).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import pytest

from common.algorithm import load_algorithm
from common.data import content_types as ct
from common.data.recordio_writer import encode_sparse
from tests.fuzz import bodies
from tests.fuzz.checks import minimize, replay
from tests.fuzz.conftest import SERVER_RESULTS
from tests.fuzz.isolation import ChildDied, Isolated
from tests.integration.helpers import free_port, train
from tools.local import run_entrypoint, write_job

BODIES = int(os.environ.get("FUZZ_BODIES", "10000"))
SEED = os.environ.get("FUZZ_SEED", "0")
REPORT = Path(os.environ.get("FUZZ_REPORT", "/tmp/fuzz-report.json"))
PING_EVERY_S, PING_LIMIT_S = 0.2, 2.0
KIND = {ct.CSV: "csv", ct.JSON: "json", ct.JSONLINES: "jsonlines", ct.RECORDIO: "recordio", ct.LIBSVM: "libsvm"}
HEADER_VARIANTS = {  # Content-Type spellings a client may send, besides the plain name
    ct.CSV: ["text/csv; charset=utf-8", "text/csv;label_size=0", "text/csv;label_size=1", "text/csv;label_size=x",
             "csv", "TEXT/CSV"],
    ct.JSON: ["application/json; charset=utf-8", "application/json;verbose=true"],
    ct.JSONLINES: ["application/jsonl", "application/x-jsonlines"],
    ct.RECORDIO: ["application/x-recordio", "recordio-protobuf"],
    ct.LIBSVM: ["libsvm", "text/x-libsvm"],
}


# ---- the images: tiny training jobs ------------------------------------------------------------------------
@dataclass
class Image:
    name: str
    hyperparameters: dict[str, str]
    width: int  # features per request row
    ints: tuple[int, ...] = ()  # categorical columns: small whole numbers in valid rows
    channel: str = "train"
    content_type: str | None = "text/csv"
    labelled: bool = False  # a label column first in the CSV training file
    extra_files: dict[str, str] = field(default_factory=dict)


def _csv(path: Path, x: np.ndarray, y: np.ndarray | None = None) -> Path:
    rows = x if y is None else np.column_stack([y, x])
    path.write_text("".join(",".join(f"{v:g}" for v in row) + "\n" for row in rows))
    return path


IMAGES = {
    "kmeans": Image("kmeans", {"k": "3", "feature_dim": "4", "mini_batch_size": "100"}, 4),
    "pca": Image("pca", {"feature_dim": "4", "num_components": "2", "mini_batch_size": "100"}, 4),
    "knn": Image("knn", {"k": "3", "feature_dim": "4", "sample_size": "300", "predictor_type": "classifier"}, 4,
                 labelled=True),
    "rcf": Image("rcf", {"feature_dim": "3", "num_trees": "50", "num_samples_per_tree": "32",
                         "mini_batch_size": "100"}, 3),
    "fm": Image("fm", {"feature_dim": "10", "num_factors": "2", "predictor_type": "binary_classifier",
                       "epochs": "2", "mini_batch_size": "50"}, 10, content_type=None),
    "xgboost": Image("xgboost", {"num_round": "3", "objective": "binary:logistic"}, 4, labelled=True),
    "lightgbm": Image("lightgbm", {"num_boost_round": "10"}, 4, ints=(1,), labelled=True,
                      extra_files={"categorical_index.json": '{"cat_index_list": [2]}'}),
    "catboost": Image("catboost", {"iterations": "20", "learning_rate": "0.2"}, 4, ints=(1,), channel="training",
                      labelled=True, extra_files={"categorical_index.json": '{"cat_index_list": [2]}'}),
}


def _train(image: Image, tmp: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, image.width)).round(4)
    for column in image.ints:
        x[:, column] = rng.integers(0, 4, len(x))
    y = (x[:, 0] + (x[:, 1] if image.width > 1 else 0) > 0).astype(float)
    if image.name == "fm":
        files = [tmp / "train.rec"]
        files[0].write_bytes(encode_sparse(_one_hot(rng, 300, image.width), y.astype(np.float32)))
    else:
        files = [_csv(tmp / "train.csv", x, y if image.labelled else None)]
    for name, text in image.extra_files.items():
        (tmp / name).write_text(text)
        files.append(tmp / name)
    base = tmp / "ml"
    write_job(base, image.hyperparameters, {image.channel: (files, image.content_type)})
    result = train(image.name, base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base


def _one_hot(rng: np.random.Generator, rows: int, width: int):
    import scipy.sparse as sp

    cols = np.stack([rng.integers(0, width // 2, rows), rng.integers(width // 2, width, rows)], 1).ravel()
    return sp.csr_matrix((np.ones(2 * rows, np.float32), cols, np.arange(0, 2 * rows + 1, 2)), shape=(rows, width))


# ---- the server and its watcher ----------------------------------------------------------------------------
class Server:
    def __init__(self, algorithm: str, base: Path, log: Path) -> None:
        self.port = free_port()
        env = {"SAGEMAKER_BIND_TO_PORT": str(self.port)}
        if os.environ.get("FUZZ_WORKERS"):
            env["SAGEMAKER_MODEL_SERVER_WORKERS"] = os.environ["FUZZ_WORKERS"]
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = run_entrypoint("serve", algorithm, base, env, stdout=self._log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not self._ready():
            if self.process.poll() is not None:
                raise AssertionError("the server exited:\n" + log.read_text()[-3000:])
            if time.monotonic() > deadline:
                raise AssertionError("the server never answered /ping:\n" + log.read_text()[-3000:])
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            connection.request("GET", "/ping")
            ok = connection.getresponse().status == 200
            connection.close()
            return ok and len(self.workers()) > 0
        except OSError:
            return False

    def workers(self) -> set[int]:
        try:
            return {child.pid for child in psutil.Process(self.process.pid).children()}
        except psutil.NoSuchProcess:
            return set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


class Watcher(threading.Thread):
    """GET /ping every 200 ms (its own keep-alive connection) and the set of gunicorn workers."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.known = server.workers()
        self.deaths = 0
        self.max_ping = 0.0
        self.ping_failures = 0
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        while not self._stop_event.wait(PING_EVERY_S):
            start = time.monotonic()
            try:
                connection.request("GET", "/ping")
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
            elapsed = time.monotonic() - start
            workers = self.server.workers()
            with self._lock:
                self.max_ping = max(self.max_ping, elapsed)
                self.ping_failures += not ok
                self.deaths += len(self.known - workers)
                self.known = workers
        connection.close()

    def snapshot(self) -> tuple[int, float, int]:
        """(deaths, max ping seconds, ping failures) since the last snapshot."""
        with self._lock:
            out = (self.deaths, self.max_ping, self.ping_failures)
            self.deaths, self.max_ping, self.ping_failures = 0, 0.0, 0
        return out

    def stop(self) -> None:
        self._stop_event.set()
        self.join(15)


# ---- fuzzing one content type ------------------------------------------------------------------------------
def _accept(rng: random.Random, algorithm: type) -> str | None:
    pick = rng.random()
    if pick < 0.15:
        return None
    if pick < 0.2:
        return rng.choice(["*/*", "text/html", "application/json, */*", "", "application/json;verbose=true"])
    accept = rng.choice(algorithm.response_types)
    return accept + ";verbose=true" if rng.random() < 0.2 else accept


def _content_type(rng: random.Random, name: str) -> str:
    return rng.choice(HEADER_VARIANTS[name]) if rng.random() < 0.1 else name


def _fuzz(server: Server, watcher: Watcher, image: Image, algorithm: type, name: str) -> tuple[dict, list]:
    rng = random.Random(f"{SEED}/{image.name}/{name}")
    kind = KIND[name]
    statuses: Counter[int] = Counter()
    dropped, max_request = 0, 0.0
    samples: list[tuple[int, bytes, str, str | None, int]] = []  # the smallest 5xx bodies
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    watcher.snapshot()
    started = time.monotonic()
    for _ in range(BODIES):
        if kind == "libsvm":
            body = bodies.body(kind, rng, image.width) if rng.random() < 0.5 else bodies.libsvm_mutant(
                rng, image.width, labelled=True)
        else:
            body = bodies.body(kind, rng, image.width, image.ints)
        content_type, accept = _content_type(rng, name), _accept(rng, algorithm)
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept is not None else {})}
        start = time.monotonic()
        try:
            connection.request("POST", "/invocations", body, headers)
            response = connection.getresponse()
            response.read()
            status = response.status
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
        except (OSError, http.client.HTTPException):
            dropped += 1
            status = 0
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        max_request = max(max_request, time.monotonic() - start)
        statuses[status] += 1
        if status >= 500 or status == 0:
            samples.append((len(body), body, content_type, accept, status))
            samples = sorted(samples, key=lambda s: s[0])[:20]
    connection.close()
    deaths, max_ping, ping_failures = watcher.snapshot()
    row = {
        "image": image.name, "content_type": name, "bodies": BODIES,
        "2xx": sum(v for k, v in statuses.items() if 200 <= k < 300),
        "4xx": sum(v for k, v in statuses.items() if 400 <= k < 500),
        "5xx": sum(v for k, v in statuses.items() if k >= 500),
        "dropped": dropped, "worker_deaths": deaths, "ping_failures": ping_failures,
        "max_ping_s": round(max_ping, 3), "max_request_s": round(max_request, 3),
        "seconds": round(time.monotonic() - started, 1), "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }
    return row, samples


def _explain(image: Image, base: Path, samples: list, row: dict, log: Path) -> list[dict]:
    """Replay the smallest failing bodies in a child process, group them by where they raise, shrink one each."""
    groups: dict[tuple, dict] = {}
    model_dir = str(base / "model")
    with Isolated(timeout=60) as child:
        for _, body, content_type, accept, status in samples:
            try:
                outcome = child.call(replay, image.name, model_dir, body, content_type, accept)
            except ChildDied as exc:
                outcome = ("error", "crash", str(exc), str(exc), "")
            if outcome[0] != "error":
                key = ("not reproduced", outcome[0])
                outcome = ("error", f"not reproduced in-process ({outcome[0]})", "?", "", "")
            else:
                key = outcome[1:3]
            if key in groups:
                groups[key]["count"] += 1
                continue
            minimal = body
            if outcome[1] not in ("crash",) and not outcome[1].startswith("not reproduced"):
                try:
                    minimal = child.call(minimize, image.name, model_dir, body, content_type, accept)
                except (ChildDied, AssertionError):
                    pass
            groups[key] = {"count": 1, "status": status, "exception": outcome[3], "where": outcome[2],
                           "content_type": content_type, "accept": accept, "body": repr(minimal[:400]),
                           "traceback": outcome[4]}
    if row["worker_deaths"] or row["dropped"]:
        events = re.findall(r".*(?:WORKER TIMEOUT|was sent|exited with code|Worker \(pid).*", log.read_text("utf-8",
                                                                                                         "replace"))
        groups[("log",)] = {"count": len(events), "status": "worker", "exception": "; ".join(events[-5:]),
                            "where": "gunicorn log", "body": "see the 5xx/dropped bodies above", "traceback": ""}
    return list(groups.values())


def _write_report() -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({"bodies_per_content_type": BODIES, "seed": SEED, "rows": SERVER_RESULTS},
                                 indent=2))


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", list(IMAGES))
def test_server_survives_malformed_bodies(name: str, tmp_path: Path) -> None:
    image = IMAGES[name]
    algorithm = load_algorithm(name)
    base = _train(image, tmp_path)
    server = Server(name, base, tmp_path / "server.log")
    watcher = Watcher(server)
    watcher.start()
    rows = []
    try:
        for content_type in algorithm.request_types:
            row, samples = _fuzz(server, watcher, image, algorithm, content_type)
            rows.append((row, samples))
    finally:
        watcher.stop()
        server.stop()
    problems = []
    for row, samples in rows:
        row["failures"] = _explain(image, base, samples, row, server.log) if samples or row["worker_deaths"] else []
        SERVER_RESULTS.append(row)
        bad = {k: row[k] for k in ("5xx", "dropped", "worker_deaths", "ping_failures") if row[k]}
        if row["max_ping_s"] >= PING_LIMIT_S:
            bad["max_ping_s"] = row["max_ping_s"]
        if bad:
            problems.append(f"{row['content_type']}: {bad}; " + "; ".join(
                f"{f['count']} x {f['exception']} at {f['where']} for {f['body'][:200]}" for f in row["failures"]))
    _write_report()
    assert not problems, f"{name}:\n" + "\n".join(problems)
