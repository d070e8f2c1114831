"""The processes bench_knn.py measures: our gunicorn server, and FAISS's `index.search` in a clean child.

Both report wall time and CPU time: on a shared 2-core machine the wall times of two runs of the same
work differ by up to 2x, CPU seconds much less.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
K, THREADS = 10, 2
MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
TICK = os.sysconf("SC_CLK_TCK")


class Server:
    """Our image's `serve` (gunicorn) on a model directory."""

    def __init__(self, base: Path, port: int, workers: int = 1) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), ALGORITHM="knn", SAGEMAKER_BASE_DIR=str(base),
                   SAGEMAKER_BIND_TO_PORT=str(port), SAGEMAKER_MODEL_SERVER_WORKERS=str(workers),
                   SAGEMAKER_MAX_PAYLOAD_IN_MB="32")  # 1,000 CSV rows of 784 numbers are about 8 MB
        self.process = subprocess.Popen([sys.executable, "-m", "common.entrypoint", "serve"], env=env, cwd=REPO,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = port
        self.connection: http.client.HTTPConnection | None = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.post_status("GET", "/ping") == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("the k-NN server did not start")

    def post_status(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> int:
        """One request on a kept-alive connection, as SageMaker's front end sends them."""
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            self.connection.request(method, path, body=body, headers=headers or {})
            response = self.connection.getresponse()
            response.read()
        except OSError:
            self.connection.close()
            self.connection = None
            raise
        return response.status

    def invoke(self, body: bytes, content_type: str, accept: str) -> None:
        status = self.post_status("POST", "/invocations", body, {"Content-Type": content_type, "Accept": accept})
        if status != 200:
            raise SystemExit(f"/invocations answered {status}")

    def worker_memory(self) -> list[str]:
        """Per worker: private anonymous memory, and the resident pages of the mapped index file (shared)."""
        out = []
        for pid in self._workers():
            anon = mapped = 0
            in_index = False
            for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
                if MAPPING.match(line):
                    in_index = line.rstrip().endswith("model_algo-1")
                elif line.startswith("Rss:") and in_index:
                    mapped += int(line.split()[1])
                elif line.startswith("Anonymous:"):
                    anon += int(line.split()[1])
            out.append(f"anonymous {anon / 1024:.0f} MB + index file mapped {mapped / 1024:.1f} MB")
        return out

    def cpu_seconds(self) -> float:
        """CPU time used so far by the workers (user + system)."""
        total = 0
        for pid in self._workers():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / TICK

    def timed_invoke(self, body: bytes, content_type: str, accept: str) -> tuple[float, float]:
        """(wall seconds, worker CPU seconds) of one request."""
        cpu, started = self.cpu_seconds(), time.perf_counter()
        self.invoke(body, content_type, accept)
        return time.perf_counter() - started, self.cpu_seconds() - cpu

    def _workers(self) -> list[str]:
        return Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()

    def stop(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.process.terminate()
        self.process.wait(timeout=30)


class Anchor:
    """`index.search` on the saved index in a clean child process (the server's thread settings), timed there."""

    def __init__(self, index_path: Path, queries: Path, nprobe: int | None) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), **{v: str(THREADS) for v in THREAD_VARIABLES})
        self.process = subprocess.Popen([sys.executable, __file__, str(index_path), str(queries), str(nprobe or 0)],
                                        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def timed_search(self) -> tuple[float, float]:
        """(wall seconds, CPU seconds) of one `index.search` of the queries."""
        self.process.stdin.write("search\n")
        self.process.stdin.flush()
        wall, cpu = self.process.stdout.readline().split()
        return float(wall), float(cpu)

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def anchor_worker(index_path: str, queries_path: str, nprobe: int) -> None:
    import faiss

    faiss.omp_set_num_threads(THREADS)
    # Opened as our server opens it: memory-mapped Flat searches ran 15-25 % faster here than after a plain
    # read_index (page-aligned vectors), which would flatter us.
    index = faiss.read_index(index_path, faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    queries = np.load(queries_path)
    params = faiss.SearchParametersIVF(nprobe=nprobe) if nprobe else None
    for _ in sys.stdin:
        cpu, started = time.process_time(), time.perf_counter()
        index.search(queries, K, params=params)
        print(time.perf_counter() - started, time.process_time() - cpu, flush=True)


if __name__ == "__main__":
    anchor_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))
