"""Multi-model endpoints through the Flask app in one process (with gunicorn: tests/integration/test_multi_model.py)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from algorithms.kmeans.algorithm import KMeans
from common.serving.app import create_app, invoke
from common.serving.memory import FRACTION_VAR, MAX_MODELS_VAR, memory_limit_bytes
from common.serving.model_set import Registry

ROW = b"1,1"


def _kmeans(folder: Path, centers: list[list[float]]) -> Path:
    folder.mkdir(parents=True)
    KMeans(np.array(centers, np.float32)).save(folder)
    return folder


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SAGEMAKER_MULTI_MODEL", "true")
    monkeypatch.delenv(MAX_MODELS_VAR, raising=False)
    monkeypatch.delenv(FRACTION_VAR, raising=False)
    monkeypatch.delenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", raising=False)
    return create_app(KMeans, Path("/nonexistent")).test_client()


def _load(client, name: str, url: Path | str):
    return client.post("/models", data=json.dumps({"model_name": name, "url": str(url)}),
                       content_type="application/json")


def _invoke(client, name: str, body: bytes = ROW, **headers: str):
    return client.post(f"/models/{name}/invoke", data=body, headers={"Content-Type": "text/csv", **headers})


def test_ping_without_a_model_and_invocations_points_to_the_models_routes(client) -> None:
    assert client.get("/ping").status_code == 200
    response = client.post("/invocations", data=ROW, content_type="text/csv")
    assert response.status_code == 404 and b"/models/<model_name>/invoke" in response.data
    assert client.get("/models").get_json() == {"models": []}


def test_load_list_get_invoke_unload_reload(client, tmp_path: Path) -> None:
    near = _kmeans(tmp_path / "near", [[0, 0], [10, 10]])
    far = _kmeans(tmp_path / "far", [[100, 100], [1, 1]])
    assert _load(client, "a", near).get_json() == {"status": "Model a loaded."}
    assert _load(client, "b", far).status_code == 200
    assert client.get("/models").get_json() == {"models": [{"modelName": "a", "modelUrl": str(near)},
                                                           {"modelName": "b", "modelUrl": str(far)}]}
    assert client.get("/models/b").get_json() == {"modelName": "b", "modelUrl": str(far)}
    for name, folder in (("a", near), ("b", far)):
        response = _invoke(client, name, **{"Accept": "text/csv", "X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz"})
        expected, content_type = invoke(KMeans.load(folder), ROW, "text/csv", "text/csv")
        assert response.status_code == 200 and response.data == expected and response.mimetype == content_type

    assert client.delete("/models/a").get_json() == {"status": "Model a unloaded."}
    gone = _invoke(client, "a")  # invocations answer as /invocations does: plain text
    assert gone.status_code == 404 and gone.data == b"Model a is not loaded.\n"
    for response in (client.get("/models/a"), client.delete("/models/a")):
        assert response.status_code == 404 and response.get_json() == {"code": 404, "message": "Model a is not loaded."}
    assert _load(client, "a", far).status_code == 200  # the name again, another model
    assert _invoke(client, "a").data == _invoke(client, "b").data


def test_paging(client, tmp_path: Path) -> None:
    folder = _kmeans(tmp_path / "m", [[0, 0]])
    names = [f"model-{i:02d}" for i in range(7)]
    for name in reversed(names):
        assert _load(client, name, folder).status_code == 200
    seen, token, pages = [], None, 0
    while True:
        query = {"limit": "3", **({"next_page_token": token} if token else {})}
        listing = client.get("/models", query_string=query).get_json()
        seen += [model["modelName"] for model in listing["models"]]
        pages += 1
        token = listing.get("nextPageToken")
        if token is None:
            break
    assert seen == names and pages == 3
    assert len(client.get("/models", query_string={"limit": "0"}).get_json()["models"]) == 7  # out of range: 100
    assert client.get("/models", query_string={"limit": "x"}).status_code == 400
    assert client.get("/models", query_string={"next_page_token": "%%%"}).status_code == 400


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", 'POST /models takes a JSON object: {"model_name": "<name>", "url": "<model folder>"}.'),
    (b'{"url": "/x"}', 'POST /models needs "model_name", a non-empty string; got null.'),
    (b'{"model_name": "m", "url": 3}', 'POST /models needs "url", a non-empty string; got 3.'),
    (b'{"model_name": "m", "url": "/does/not/exist"}', "The model url /does/not/exist does not exist in the "
     "container; give the folder the model's files (or its model.tar.gz) are in."),
])
def test_bad_load_requests_are_400s(client, body: bytes, message: str) -> None:
    response = client.post("/models", data=body, content_type="application/json")
    assert response.status_code == 400 and response.get_json() == {"code": 400, "message": message}


def test_a_file_an_empty_folder_and_a_broken_archive_are_400s(client, tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    assert "is not a folder" in _load(client, "m", file).get_json()["message"]
    (tmp_path / "empty").mkdir()
    message = _load(client, "m", tmp_path / "empty").get_json()["message"]
    assert message.startswith(f"Model m could not be loaded from {tmp_path / 'empty'}: model_algo-1 is missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.tar.gz").write_bytes(b"not a tar")
    assert _load(client, "m", tmp_path / "broken").get_json()["message"].startswith("Cannot extract ")
    assert client.get("/models").get_json() == {"models": []}


def test_a_folder_holding_model_tar_gz_is_extracted_and_removed_on_unload(client, tmp_path: Path) -> None:
    files = _kmeans(tmp_path / "files", [[0, 0], [10, 10]])
    packed = tmp_path / "packed"
    packed.mkdir()
    with tarfile.open(packed / "model.tar.gz", "w:gz") as archive:
        archive.add(files / "model_algo-1", "model_algo-1")
    registry = Registry.create()
    client = create_app(KMeans, Path("/nonexistent"), registry=registry).test_client()
    assert _load(client, "t", packed).status_code == 200
    assert client.get("/models/t").get_json() == {"modelName": "t", "modelUrl": str(packed)}
    assert _invoke(client, "t").data == invoke(KMeans.load(files), ROW, "text/csv", None)[0]
    assert len(list(registry.extracted_dir.iterdir())) == 1
    assert client.delete("/models/t").status_code == 200
    assert list(registry.extracted_dir.iterdir()) == []


def test_409_when_loaded_and_507_over_the_count_or_memory(client, tmp_path: Path, monkeypatch) -> None:
    folder = _kmeans(tmp_path / "m", [[0, 0]])
    assert _load(client, "m", folder).status_code == 200
    conflict = _load(client, "m", folder)
    assert conflict.status_code == 409 and "already loaded" in conflict.get_json()["message"]

    monkeypatch.setenv(MAX_MODELS_VAR, "2")
    limited = create_app(KMeans, Path("/nonexistent")).test_client()
    assert _load(limited, "a", folder).status_code == 200 and _load(limited, "b", folder).status_code == 200
    full = _load(limited, "c", folder)
    assert full.status_code == 507 and full.get_json()["message"] == (
        f"Cannot load model c: 2 models are loaded and {MAX_MODELS_VAR} is 2; unload one first.")
    assert limited.delete("/models/a").status_code == 200 and _load(limited, "c", folder).status_code == 200

    monkeypatch.setenv(FRACTION_VAR, "0.5")
    huge = tmp_path / "huge"
    huge.mkdir()
    with open(huge / "model_algo-1", "wb") as sparse:  # counted by its size, never read: the check comes first
        sparse.truncate(int(memory_limit_bytes() * 0.6))
    response = _load(create_app(KMeans, Path("/nonexistent")).test_client(), "huge", huge)
    assert response.status_code == 507
    message = response.get_json()["message"]
    assert message.startswith("Cannot load model huge: it needs about ") and "0.5 of the container's" in message


def test_single_model_mode_has_no_models_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGEMAKER_MULTI_MODEL", raising=False)
    _kmeans(tmp_path / "model", [[0, 0]])
    client = create_app(KMeans, tmp_path / "model").test_client()
    assert client.get("/models").status_code == 404
    assert client.post("/models/m/invoke", data=ROW, content_type="text/csv").status_code == 404
    assert client.post("/invocations", data=ROW, content_type="text/csv").status_code == 200


def test_each_models_own_inference_module_answers_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from algorithms.sklearn.algorithm import SKLearn

    monkeypatch.setenv("SAGEMAKER_MULTI_MODEL", "true")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    for variable in ("SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY"):
        monkeypatch.delenv(variable, raising=False)
    client = create_app(SKLearn, tmp_path / "model").test_client()
    for name, factor in (("double", 2), ("triple", 3)):
        (tmp_path / name / "code").mkdir(parents=True)
        (tmp_path / name / "code" / "inference.py").write_text(
            f"def model_fn(model_dir):\n    return {factor}\n\n"
            "def transform_fn(model, body, content_type, accept):\n    return str(model * len(body)), 'text/plain'\n")
        assert _load(client, name, tmp_path / name).status_code == 200
    answers = {name: _invoke(client, name, b"abcd").data for name in ("double", "triple")}
    assert answers == {"double": b"8", "triple": b"12"}
    no_code = _load(client, "plain", _kmeans(tmp_path / "plain", [[0, 0]]))
    assert no_code.status_code == 400 and "serves inference modules only" in no_code.get_json()["message"]
