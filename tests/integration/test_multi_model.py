"""Multi-model endpoints through the real server: `serve` under gunicorn with 2 workers, SAGEMAKER_MULTI_MODEL=true.

Every image that trains quickly loads, lists, describes, invokes, refuses (400/404/409/507), unloads and reloads
a model trained through the entrypoint; then 60 kmeans models of mixed sizes are loaded, invoked, unloaded and
reloaded from several client threads at once, and each worker's resident memory comes back after the unloads.
"""

from __future__ import annotations

import json
import random
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from algorithms.kmeans.algorithm import KMeans
from common.algorithm import load_algorithm
from common.data.recordio_writer import encode_dense
from common.serving.app import invoke
from common.serving.endpoint import load_endpoint
from common.serving.memory import DEFAULT_FRACTION, MAX_MODELS_VAR, memory_limit_bytes
from tests.integration.helpers import free_port, train
from tests.unit.test_lightgbm import write_csv
from tools.local import run_entrypoint, stop_server, write_job

WORKERS = 2
RNG = np.random.default_rng(20)
X = RNG.standard_normal((240, 4)).round(3)
Y = (X[:, 0] + X[:, 1] > 0).astype(float)
CSV_ROWS = b"0.5,-1,0.25,2\n-1,0.3,0,1\n"


@dataclass(frozen=True)
class Image:
    hyperparameters: dict[str, str]
    channels: Callable[[Path], dict]
    body: bytes = CSV_ROWS
    content_type: str = "text/csv"


def _csv(channel: str, labelled: bool, content_type: str = "text/csv") -> Callable[[Path], dict]:
    return lambda tmp: {channel: ([write_csv(tmp / "train.csv", X, Y if labelled else None)], content_type)}


def _recordio(labelled: bool) -> Callable[[Path], dict]:
    def channels(tmp: Path) -> dict:
        path = tmp / "train.rec"
        path.write_bytes(encode_dense(X.astype(np.float32), Y.astype(np.float32) if labelled else None))
        return {"train": ([path], None)}
    return channels


IMAGES = {
    "kmeans": Image({"k": "2", "feature_dim": "4", "mini_batch_size": "100"}, _recordio(labelled=False)),
    "pca": Image({"feature_dim": "4", "num_components": "2", "mini_batch_size": "100"}, _csv("train", False)),
    "knn": Image({"k": "3", "feature_dim": "4", "sample_size": "200", "predictor_type": "classifier"},
                 _csv("train", True)),
    "rcf": Image({"feature_dim": "4", "num_trees": "50", "num_samples_per_tree": "32", "mini_batch_size": "100"},
                 _csv("train", False)),
    "fm": Image({"feature_dim": "4", "num_factors": "2", "predictor_type": "regressor", "epochs": "2"},
                _recordio(labelled=True), json.dumps({"instances": [{"features": [0.5, -1, 0.25, 2]}]}).encode(),
                "application/json"),
    "xgboost": Image({"num_round": "5", "objective": "reg:squarederror"}, _csv("train", True)),
    "lightgbm": Image({"num_boost_round": "5"}, _csv("train", True)),
    "catboost": Image({"iterations": "10"}, _csv("training", True)),
}


@contextmanager
def multi_model_server(algorithm: str, tmp: Path, extra_env: dict[str, str] | None = None) \
        -> Iterator[tuple[str, psutil.Process, Path]]:
    """The entrypoint's `serve` with no model in /opt/ml/model; its log goes to a file (a pipe would fill)."""
    base = tmp / "ml"
    (base / "model").mkdir(parents=True, exist_ok=True)
    port, log = free_port(), tmp / "server.log"
    env = {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_BIND_TO_PORT": str(port),
           "SAGEMAKER_MODEL_SERVER_WORKERS": str(WORKERS), "OMP_NUM_THREADS": "1", **(extra_env or {})}
    with open(log, "wb") as output:
        server = run_entrypoint("serve", algorithm, base, env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "the server exited:\n" + log.read_text()
            try:
                if requests.get(url + "/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the server never answered /ping:\n" + log.read_text()
            time.sleep(0.1)
        yield url, psutil.Process(server.pid), log
    finally:
        stop_server(server)


def _load(url: str, name: str, folder: Path | str) -> requests.Response:
    return requests.post(url + "/models", json={"model_name": name, "url": str(folder)}, timeout=120)


def _invoke(url: str, name: str, body: bytes, content_type: str = "text/csv") -> requests.Response:
    headers = {"Content-Type": content_type, "X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz"}
    return requests.post(f"{url}/models/{name}/invoke", data=body, headers=headers, timeout=120)


def _listed(url: str, limit: int) -> tuple[list[dict[str, str]], int]:
    """Every model GET /models lists, following nextPageToken, and how many pages that took."""
    models, token, pages = [], None, 0
    while True:
        query = {"limit": limit, **({"next_page_token": token} if token else {})}
        listing = requests.get(url + "/models", params=query, timeout=30).json()
        models, pages, token = models + listing["models"], pages + 1, listing.get("nextPageToken")
        if token is None:
            return models, pages


def _packed(files: Path, folder: Path) -> Path:
    """A folder holding nothing but the model's model.tar.gz."""
    folder.mkdir(parents=True)
    with tarfile.open(folder / "model.tar.gz", "w:gz") as archive:
        for path in sorted(files.iterdir()):
            archive.add(path, path.name)
    return folder


@pytest.fixture(scope="module", params=sorted(IMAGES))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    algorithm, image = request.param, IMAGES[request.param]
    tmp = tmp_path_factory.mktemp(algorithm)
    base = tmp / "job"
    write_job(base, image.hyperparameters, image.channels(tmp))
    result = train(algorithm, base)
    assert result.returncode == 0, result.stdout + result.stderr
    return algorithm, base / "model"


def test_every_api_in_every_image(trained: tuple[str, Path], tmp_path: Path) -> None:
    algorithm, files = trained
    image = IMAGES[algorithm]
    packed = _packed(files, tmp_path / "packed")
    expected, expected_type = invoke(load_endpoint(load_algorithm(algorithm), files), image.body,
                                     image.content_type, None)
    empty = tmp_path / "empty"
    empty.mkdir()

    with multi_model_server(algorithm, tmp_path / "server", {MAX_MODELS_VAR: "3"}) as (url, _, _):
        assert requests.get(url + "/ping", timeout=10).status_code == 200
        assert _load(url, "files", files).json() == {"status": "Model files loaded."}
        assert _load(url, "packed", packed).status_code == 200
        conflict = _load(url, "files", packed)
        assert conflict.status_code == 409 and conflict.json()["message"] == (
            "Model files is already loaded; unload it before loading it again.")

        assert _listed(url, limit=1) == ([{"modelName": "files", "modelUrl": str(files)},
                                          {"modelName": "packed", "modelUrl": str(packed)}], 2)
        assert requests.get(url + "/models/packed", timeout=10).json() == {"modelName": "packed",
                                                                           "modelUrl": str(packed)}
        for _ in range(4):  # a connection each: both workers answer, the one that did not load loads on first use
            for name in ("files", "packed"):
                response = _invoke(url, name, image.body, image.content_type)
                assert response.status_code == 200, response.text
                assert response.content == expected and response.headers["Content-Type"] == expected_type

        missing = _invoke(url, "missing", image.body, image.content_type)
        assert missing.status_code == 404 and missing.text == "Model missing is not loaded.\n"
        for response in (requests.get(url + "/models/missing", timeout=10),
                         requests.delete(url + "/models/missing", timeout=10)):
            assert response.status_code == 404 and response.json() == {"code": 404,
                                                                       "message": "Model missing is not loaded."}
        bad = {
            "no url": requests.post(url + "/models", json={"model_name": "m"}, timeout=10),
            "not JSON": requests.post(url + "/models", data=b"{", timeout=10),
            "a file": _load(url, "m", packed / "model.tar.gz"),
            "nothing loadable": _load(url, "m", empty),
        }
        assert {what: response.status_code for what, response in bad.items()} == dict.fromkeys(bad, 400)
        assert bad["a file"].json()["message"].startswith(f"The model url {packed / 'model.tar.gz'} is not a folder")
        assert bad["nothing loadable"].json()["message"].startswith(f"Model m could not be loaded from {empty}: ")

        assert _load(url, "third", files).status_code == 200
        full = _load(url, "fourth", files)
        assert full.status_code == 507 and f"{MAX_MODELS_VAR} is 3" in full.json()["message"]

        assert requests.delete(url + "/models/files", timeout=60).json() == {"status": "Model files unloaded."}
        assert _invoke(url, "files", image.body, image.content_type).status_code == 404
        assert requests.get(url + "/models/files", timeout=10).status_code == 404
        assert _load(url, "fourth", files).status_code == 200  # the unload made room
        assert _load(url, "files", packed).status_code == 507
        assert requests.delete(url + "/models/third", timeout=60).status_code == 200
        assert _load(url, "files", packed).status_code == 200  # reloaded, from the archive this time
        for _ in range(4):
            response = _invoke(url, "files", image.body, image.content_type)
            assert response.status_code == 200 and response.content == expected
        assert [m["modelName"] for m in _listed(url, limit=100)[0]] == ["files", "fourth", "packed"]
        assert requests.post(url + "/invocations", data=image.body, headers={"Content-Type": image.content_type},
                             timeout=10).status_code == 404
        assert requests.get(url + "/ping", timeout=10).status_code == 200


# ---- many models at once ------------------------------------------------------------------------
SHAPES = [(2, 4), (8, 32), (64, 128), (256, 256), (1024, 512), (2048, 512)]  # (k, feature_dim): 32 B to 4 MiB
MODELS = 60
CLIENTS = 6
SWAP = len(SHAPES)  # model i and model i + SWAP have the same shape: either answers the other's request


@dataclass(frozen=True)
class Kmeans:
    url: Path     # its files, or a folder holding its model.tar.gz
    files: Path
    body: bytes
    size: int


def _mixed_models(root: Path) -> list[Kmeans]:
    rng = np.random.default_rng(7)
    models = []
    for i in range(MODELS):
        k, dim = SHAPES[i % len(SHAPES)]
        files = root / f"files-{i}"
        files.mkdir(parents=True)
        KMeans(rng.standard_normal((k, dim)).astype(np.float32)).save(files)
        url = _packed(files, root / f"packed-{i}") if i % 3 == 0 and k * dim < 100_000 else files
        body = ",".join(f"{v:.3f}" for v in rng.standard_normal(dim)).encode()
        models.append(Kmeans(url, files, body, k * dim * 4))
    return models


def _answer(model: Kmeans, body: bytes) -> bytes:
    return invoke(KMeans.load(model.files), body, "text/csv", None)[0]


def _worker_rss(master: psutil.Process) -> dict[int, int]:
    return {worker.pid: worker.memory_info().rss for worker in master.children()}


def test_sixty_models_of_mixed_sizes_under_concurrent_requests(tmp_path: Path) -> None:
    models = _mixed_models(tmp_path / "models")
    names = [f"model-{i:02d}" for i in range(MODELS)]
    # expected[i][j]: model j's answer to model i's request (j is i or its same-shaped partner)
    expected = {i: {j: _answer(models[j], models[i].body) for j in (i, (i + SWAP) % MODELS)} for i in range(MODELS)}
    failures: list[str] = []

    def check(response: requests.Response, status: int, answer: bytes | None, what: str) -> None:
        if response.status_code != status or (answer is not None and response.content != answer):
            failures.append(f"{what}: {response.status_code} {response.content[:200]!r}")

    def load(i: int, holding: int) -> None:
        check(_load(url, names[i], models[holding].url), 200, None, f"load {names[i]} <- {holding}")

    def invoke_checked(i: int, holding: int, times: int = 3) -> None:
        for _ in range(times):
            check(_invoke(url, names[i], models[i].body), 200, expected[i][holding], f"invoke {names[i]}")

    def unload(i: int) -> None:
        check(requests.delete(f"{url}/models/{names[i]}", timeout=60), 200, None, f"unload {names[i]}")
        check(_invoke(url, names[i], models[i].body), 404, None, f"invoke unloaded {names[i]}")

    def in_parallel(task: Callable[[list[int]], None]) -> None:
        shares = [list(range(MODELS))[c::CLIENTS] for c in range(CLIENTS)]
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(task, shares))

    def load_all(share: list[int]) -> None:
        for i in share:
            load(i, i)
            invoke_checked(i, i)

    def churn(share: list[int]) -> None:
        """Unload, reload as the same-shaped partner, invoke; and back again."""
        for i in share:
            for holding in ((i + SWAP) % MODELS, i):
                unload(i)
                load(i, holding)
                invoke_checked(i, holding, times=2)

    def unload_all(share: list[int]) -> None:
        for i in share:
            unload(i)

    def chaos(stop: threading.Event) -> None:
        """Invocations of any name while others change: loaded (either model), or not."""
        rng = random.Random(3)
        while not stop.is_set():
            i = rng.randrange(MODELS)
            response = _invoke(url, names[i], models[i].body)
            if response.status_code == 200 and response.content not in expected[i].values() \
                    or response.status_code not in (200, 404):
                failures.append(f"chaos {names[i]}: {response.status_code} {response.content[:200]!r}")

    with multi_model_server("kmeans", tmp_path / "server") as (url, master, log):
        # Warm up both workers' threads and allocator on a few models, at the concurrency of what follows (the
        # clients and the chaos invoker), then take the baseline: each thread a worker starts keeps its stack and
        # its malloc arena, and a run on a busy machine starts more of them.
        warming = threading.Event()
        warm_chaos = threading.Thread(target=chaos, args=(warming,))
        warm_chaos.start()
        try:
            for _ in range(2):
                in_parallel(lambda share: [load_all(share[:1]), unload_all(share[:1])])
        finally:
            warming.set()
            warm_chaos.join()
        baseline = _worker_rss(master)
        assert len(baseline) == WORKERS and not failures, failures

        huge = tmp_path / "huge"
        huge.mkdir()
        with open(huge / "model_algo-1", "wb") as sparse:  # counted by its size; the budget check comes first
            sparse.truncate(int(memory_limit_bytes() * DEFAULT_FRACTION))
        refused = _load(url, "huge", huge)
        assert refused.status_code == 507 and refused.json()["message"].startswith("Cannot load model huge: ")

        in_parallel(load_all)
        listed, pages = _listed(url, limit=7)
        assert [m["modelName"] for m in listed] == names and pages == 9
        peak = _worker_rss(master)

        stop = threading.Event()
        chaos_thread = threading.Thread(target=chaos, args=(stop,))
        chaos_thread.start()
        try:
            in_parallel(churn)
        finally:
            stop.set()
            chaos_thread.join()
        in_parallel(unload_all)
        assert requests.get(url + "/models", timeout=10).json() == {"models": []}
        after = _worker_rss(master)
        text = log.read_text()

    assert not failures, failures[:10]
    assert "on its first invocation here" in text  # the worker that did not load a model loaded it when invoked
    assert "Traceback" not in text, text[-3000:]
    total = sum(model.size for model in models)
    grown = {pid: peak[pid] - baseline[pid] for pid in baseline}
    kept = {pid: after[pid] - baseline[pid] for pid in baseline}
    print(f"models {total >> 20} MiB; RSS baseline {_mib(baseline)}, loaded {_mib(peak)}, unloaded {_mib(after)}")
    assert sum(grown.values()) > total  # every model is held by at least one worker at the peak
    # Unloaded models leave fragments in glibc's arenas that malloc_trim cannot give back: 0 to 17.6 MiB of the
    # 98 to 137 MiB a worker grew, over 17 runs (a fixed 16 MiB failed 2 of them). The model set kept whole
    # (62 MiB), or half of it, is over a quarter of that growth.
    assert all(kept[pid] < grown[pid] / 4 for pid in baseline), (kept, grown)


def _mib(rss: dict[int, int]) -> str:
    return ", ".join(f"{value / (1 << 20):.0f}" for value in rss.values()) + " MiB"
