"""`make demo`: train k-means on scikit-learn's digits and serve it, all locally, no container.

Writes the data as recordIO-protobuf (what the SDK's KMeans sends), trains through the
real entrypoint, starts the real server (gunicorn) on a free port, sends CSV, JSON and
recordIO requests and prints the answers.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from common.data.recordio_writer import encode_dense
from tools.local import run_entrypoint, write_job


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(port: int, body: bytes, content_type: str, accept: str) -> bytes:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": content_type, "Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def _wait_ready(port: int, server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server exited before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not answer /ping in time")


def main() -> int:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    with tempfile.TemporaryDirectory(prefix="kmeans-demo-") as tmp:
        base = Path(tmp) / "opt_ml"
        data = Path(tmp) / "digits.rec"
        data.write_bytes(encode_dense(x, y.astype(np.float32)))
        print(f"== training k-means (k=10) on {len(x)} digits ({data.stat().st_size} bytes of recordIO)")
        write_job(base, {"k": "10", "feature_dim": "64", "mini_batch_size": "500", "force_dense": "True",
                         "epochs": "3", "eval_metrics": '["msd", "ssd"]'},
                  {"train": ([data], None), "test": ([data], None)})
        if run_entrypoint("train", "kmeans", base).wait() != 0:
            print((base / "output" / "failure").read_text(), file=sys.stderr)
            return 1
        print(f"== model: {sorted(p.name for p in (base / 'model').iterdir())}")
        port = _free_port()
        server = run_entrypoint("serve", "kmeans", base, {"SAGEMAKER_BIND_TO_PORT": str(port),
                                                          "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
        try:
            _wait_ready(port, server)
            rows = x[:3]
            csv_body = "\n".join(",".join(f"{v:g}" for v in row) for row in rows).encode()
            print("== CSV in, JSON out (no Accept):")
            print(_post(port, csv_body, "text/csv", "").decode())
            print("== JSON in, JSON Lines out:")
            json_body = json.dumps({"instances": [{"features": row.tolist()} for row in rows]}).encode()
            print(_post(port, json_body, "application/json", "application/jsonlines").decode())
            print("== recordIO in, CSV out:")
            print(_post(port, encode_dense(rows), "application/x-recordio-protobuf", "text/csv").decode())
            answer = json.loads(_post(port, "\n".join(",".join(f"{v:g}" for v in r) for r in x).encode(),
                                      "text/csv", "application/json"))
            clusters = np.array([p["closest_cluster"] for p in answer["predictions"]], dtype=int)
            purity = sum(np.bincount(y[clusters == c]).max() for c in np.unique(clusters)) / len(y)
            print(f"== all {len(x)} digits: cluster purity against the true digit = {purity:.3f}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
