"""Every image driven by the real SageMaker Python SDK in local mode: `make test-local-mode`.

Each test runs one example's main() (examples/<image>.py: fit, deploy, predict with the SDK's
serializers, batch transform, clean up) in a temporary folder and checks what came back and the
job's log against the example's metric definitions. Run with .venv-sdk's Python under
docker/local-mode.sh (podman and the docker/docker-compose shims); the Makefile builds the images
first. LOCAL_MODE_IMAGES (default: every image) picks images; IMAGE_PREFIX and IMAGE_TAG (default
sagemaker- and latest) name them.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("sagemaker", reason="the SageMaker SDK is in .venv-sdk: make test-local-mode")
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
PREFIX = os.environ.get("IMAGE_PREFIX", "sagemaker-")
TAG = os.environ.get("IMAGE_TAG", "latest")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _images() -> list[str]:
    return list(_load(REPO / "docker" / "images.py", "docker_images").load())


def _wanted(name: str) -> None:
    selected = os.environ.get("LOCAL_MODE_IMAGES", "").split()
    if selected and name not in selected:
        pytest.skip(f"not in LOCAL_MODE_IMAGES={' '.join(selected)}")


@pytest.fixture(autouse=True)
def _stop_leftover_containers():
    """A failed call can leave a local endpoint or transform container serving (and the SDK's thread
    holding the process open): stop whatever is still up."""
    yield
    from sagemaker.local.local_session import LocalSagemakerClient

    for holder in [*LocalSagemakerClient._endpoints.values(), *LocalSagemakerClient._transform_jobs.values()]:
        container = getattr(holder, "container", None)
        hosting = getattr(container, "container", None)
        if hosting is not None and hosting.is_alive():
            container.stop_serving()


@pytest.fixture
def example(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Runs examples/<name>.py's main() on our image; returns its result and everything it printed."""
    if "helpers" not in sys.modules:
        _load(EXAMPLES / "helpers.py", "helpers")

    def run(name: str, *args: str, image: str | None = None) -> tuple[dict, str]:
        _wanted(name)
        module = _load(EXAMPLES / f"{name}.py", f"example_{name}")
        result = module.main(["--workdir", str(tmp_path), "--image-uri", image or f"{PREFIX}{name}:{TAG}", *args])
        log = capsys.readouterr().out
        sys.stdout.write(log)  # captured again: shown if an assertion below fails
        return result, log

    return run


def metrics(log: str, definitions: list[dict]) -> dict[str, float]:
    """Each definition's last value in the log, as SageMaker reads the lines; every one must appear."""
    found = {}
    for definition in definitions:
        values = [float(m.group(1)) for line in log.splitlines() if (m := re.search(definition["Regex"], line))]
        assert values, f"no line of the log matches {definition['Name']}: {definition['Regex']}"
        assert all(math.isfinite(v) for v in values), (definition["Name"], values)
        found[definition["Name"]] = values[-1]
    return found


def test_every_image_has_an_example_and_a_test() -> None:
    for name in _images():
        assert (EXAMPLES / f"{name}.py").is_file(), f"examples/{name}.py is missing"
        assert f"test_{name}" in globals(), f"tests/local_mode has no test_{name}"


def test_kmeans(example) -> None:
    result, log = example("kmeans")
    found = metrics(log, result["metric_definitions"])
    assert found["test:msd"] > 0 and found["test:ssd"] > found["test:msd"]
    json_rows, rows = result["json"]["predictions"], result["transform"]
    assert len(rows) == len(result["labels"]) == 297
    clusters = [int(row["closest_cluster"]) for row in rows]
    assert result["recordio_clusters"] == [int(p["closest_cluster"]) for p in json_rows] == clusters[:20]
    assert np.allclose([p["distance_to_cluster"] for p in json_rows], [r["distance_to_cluster"] for r in rows[:20]])
    assert set(clusters) <= set(range(10)) and len(set(clusters)) >= 8
    assert all(row["distance_to_cluster"] > 0 for row in rows)
    # Clusters of digits mostly hold one digit each.
    majority = sum(Counter(label for c, label in zip(clusters, result["labels"]) if c == k).most_common(1)[0][1]
                   for k in set(clusters))
    assert majority / len(clusters) > 0.6


def test_pca(example) -> None:
    result, log = example("pca")
    assert metrics(log, result["metric_definitions"])["test:reconstruction_error"] > 0
    train, test = result["train"].astype(np.float64), result["test"].astype(np.float64)
    _, vectors = np.linalg.eigh(np.cov(train, rowvar=False))
    expected = (test - train.mean(axis=0)) @ vectors[:, -5:]  # the 5 largest components
    got = np.array([row["projection"] for row in result["transform"]])
    assert got.shape == (297, 5)
    assert np.allclose(result["recordio"], [p["projection"] for p in result["json"]["projections"]], atol=1e-4)
    assert np.allclose(result["recordio"], got[:20], atol=1e-4)
    for column in got.T:  # each projection is one of the expected ones, up to its sign
        best = max(expected.T, key=lambda e: abs(np.dot(e, column)))
        assert np.allclose(column * np.sign(np.dot(best, column)), best, atol=1e-2 * np.abs(best).max())


def test_knn(example) -> None:
    result, log = example("knn")
    assert metrics(log, result["metric_definitions"])["test:accuracy"] >= 0.85
    labels = [row["predicted_label"] for row in result["transform"]]
    assert result["recordio"] == [p["predicted_label"] for p in result["json"]["predictions"]] == labels
    assert set(labels) <= {0.0, 1.0, 2.0}
    assert np.mean(np.array(labels) == result["labels"]) >= 0.85


def test_rcf(example) -> None:
    result, log = example("rcf")
    assert metrics(log, result["metric_definitions"])["test:f1"] > 0.5
    scores = np.array([row["score"] for row in result["transform"]])
    assert scores.shape == (160,)
    assert np.allclose(result["recordio"], [p["score"] for p in result["json"]["scores"]], atol=1e-5)
    assert np.allclose(result["recordio"], scores, atol=1e-5)
    flowers, odd = scores[result["labels"] == 0], scores[result["labels"] == 1]
    assert odd.min() > np.percentile(flowers, 95) and odd.mean() > 1.5 * flowers.mean()


def test_fm(example) -> None:
    result, log = example("fm")
    assert metrics(log, result["metric_definitions"])["test:binary_classification_accuracy"] >= 0.85
    rows = result["transform"]
    labels = [row["predicted_label"] for row in rows]
    assert result["recordio"] == [p["predicted_label"] for p in result["json"]["predictions"]] == labels
    assert all(0 <= row["score"] <= 1 and row["predicted_label"] == float(row["score"] >= 0.5) for row in rows)
    assert np.mean(np.array(labels) == result["labels"]) >= 0.85


def _classifier_checks(result: dict, classes: int, accuracy: float) -> None:
    """JumpStart's answers (LightGBM, CatBoost): probabilities per row, the same from the endpoint and
    the batch transform, and predicted_label only when the Accept asks for verbose."""
    probabilities = np.array(result["json"]["probabilities"])
    assert probabilities.shape == (len(result["labels"]), classes)
    assert np.allclose(probabilities.sum(axis=1), 1) and (probabilities >= 0).all()
    assert np.mean(np.argmax(probabilities, axis=1) == result["labels"]) >= accuracy
    assert "predicted_label" not in result["json"]
    assert result["verbose"]["predicted_label"] == np.argmax(probabilities[:5], axis=1).tolist()
    assert np.allclose([row["probabilities"] for row in result["transform"]], probabilities)


def test_lightgbm(example) -> None:
    result, log = example("lightgbm")
    assert metrics(log, result["metric_definitions"])["validation:binary_logloss"] < 0.3
    _classifier_checks(result, classes=2, accuracy=0.9)
    assert np.allclose(result["json"]["probabilities-1d"], np.array(result["json"]["probabilities"])[:, 1:])


def test_catboost(example) -> None:
    result, log = example("catboost")
    assert metrics(log, result["metric_definitions"])["MultiClass"] < 0.5
    _classifier_checks(result, classes=3, accuracy=0.85)


def test_xgboost(example) -> None:
    result, log = example("xgboost")
    found = metrics(log, result["metric_definitions"])
    assert found["train:auc"] > 0.95 and found["validation:auc"] > 0.9
    scores = np.array(result["csv"])
    assert scores.shape == (89,) and ((scores > 0) & (scores < 1)).all()
    assert np.mean((scores > 0.5) == result["labels"]) >= 0.9
    assert np.allclose([p["score"] for p in result["json"]["predictions"]], scores[:5])
    assert np.allclose(result["transform"], scores)  # one line per row


def test_xgboost_1_0_1_old_notebook(example) -> None:
    result, log = example("xgboost", "--old-notebook", image=f"{PREFIX}xgboost:1.0-1")
    assert metrics(log, result["metric_definitions"])["validation:merror"] < 0.2  # 1.0-1's default metric
    predictions, labels = np.array(result["predictions"]), result["labels"]
    assert predictions.shape == labels.shape and set(predictions) <= set(range(10))  # classes, comma-joined
    assert np.mean(predictions != labels) < 0.2
    assert float(result["single"]) == predictions[0] and "," not in result["single"]


def test_sklearn(example) -> None:
    result, log = example("sklearn")
    assert metrics(log, result["metric_definitions"])["validation:accuracy"] >= 0.85
    probabilities = np.array(result["json"])
    assert probabilities.shape == (25, 3) and np.allclose(probabilities.sum(axis=1), 1)
    assert np.mean(np.argmax(probabilities, axis=1) == result["labels"]) >= 0.85
    assert isinstance(result["npy"], np.ndarray) and np.allclose(result["npy"], probabilities)
    assert np.allclose(np.array(result["csv"], dtype=float), probabilities[:5])
    assert np.allclose(result["transform"], probabilities)
