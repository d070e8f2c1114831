"""Every image with an algorithm of its own, trained by the real entrypoint and served by one real gunicorn:
each (request Content-Type x Accept) pair its describe()["inference"] lists answers 200 with that Content-Type
and a body that decodes to one row per request row and the same predictions whatever the formats; no Accept
answers the default; an Accept or a Content-Type it does not list is a 406 or a 415 naming what it takes.

What the predictions must be comes from the model loaded here (its `predict` on the CSV rows), and, per
image where it is simple, from the model's own arrays (k-means: the nearest centre; PCA: (x - mean) v).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import scipy.sparse as sp

from common.algorithm import Algorithm, load_algorithm
from common.data import content_types as ct
from common.data.columns import Columns, ResponseLayout
from common.data.content_types import MediaType
from common.data.recordio_writer import encode_dense, encode_sparse
from common.serving.request import Options
from tests.integration.helpers import serving, train
from tests.responses import decode_label_records
from tools.local import write_job

NAN = (" is empty or NaN, and this algorithm needs a value in every field (only XGBoost, LightGBM and CatBoost "
       "read missing values); fill or drop it.")

RNG = np.random.default_rng(18)
D = 4
# Two well-apart groups; no value is 0, so a sparse encoding of a row holds every value (XGBoost reads an
# absent sparse entry as missing, not as 0).
X = np.vstack([RNG.normal(-3, 1, (150, D)), RNG.normal(3, 1, (150, D))]).astype(np.float32)
X[X == 0] = 0.5
Y = np.r_[np.zeros(150), np.ones(150)].astype(np.float32)
TARGET = (X @ np.array([1.0, -2.0, 0.5, 3.0], np.float32)).astype(np.float32)
ROWS = np.array([[-3.1, -2.2, -4.05, -2.75], [2.9, 3.3, 0.25, 4.125], [0.5, -0.75, 1.5, 2.0]], np.float32)


def _csv(path: Path, features: np.ndarray, labels: np.ndarray | None = None) -> Path:
    rows = features if labels is None else np.column_stack([labels, features])
    path.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows))
    return path


def _recordio(path: Path, features: np.ndarray, labels: np.ndarray | None = None) -> Path:
    path.write_bytes(encode_dense(features, labels))
    return path


@dataclass(frozen=True)
class Image:
    """The smallest job that trains the image: hyperparameters, and its channels made from X, Y, TARGET."""

    hyperparameters: dict[str, str]
    channels: Callable[[Path], dict[str, tuple[list[Path], str | None]]]
    # The JSON answer: {envelope: [{column: ...}, ...]}, or with no envelope {column: [per row], ...}.
    envelope: str | None
    columns: tuple[str, ...]
    # Checks of the served predictions against the model's own arrays (the columns as the server answered).
    expect: Callable[[Algorithm, np.ndarray, dict[str, np.ndarray]], None] | None = None
    # Bad requests (body, Content-Type) and the status and text (without its final newline) they answer.
    bad_requests: list[tuple[str, str, int, str]] = field(default_factory=list)


def _nearest_centre(model: Any, rows: np.ndarray, got: dict[str, np.ndarray]) -> None:
    squared = ((rows[:, None, :] - model.centers[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(got["closest_cluster"], squared.argmin(1).astype(float))
    np.testing.assert_allclose(got["distance_to_cluster"], np.sqrt(squared.min(1)), rtol=1e-5)


def _projection(model: Any, rows: np.ndarray, got: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(got["projection"], (rows - model.mean) @ model.v, rtol=1e-6, atol=1e-6)


def _forest_score(model: Any, rows: np.ndarray, got: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(got["score"], model.forest.score(rows), rtol=1e-6)
    assert got["score"][2] > got["score"][0]  # the row in the gap between the groups beats one inside a group


FEATURE_DIM_ERRORS = [
    ("1,2,3\n", ct.CSV, 400, "Row 1 of request has 3 features but the model's feature_dim is 4."),
    ("1,2,3,4\n1,2,nan,4\n", ct.CSV, 400, "Row 2 of request, column 3" + NAN),
]

IMAGES: dict[str, Image] = {
    "kmeans": Image({"k": "2", "feature_dim": str(D), "mini_batch_size": "100"},
                    lambda tmp: {"train": ([_recordio(tmp / "train.rec", X)], None)},
                    "predictions", ("closest_cluster", "distance_to_cluster"), _nearest_centre, FEATURE_DIM_ERRORS),
    "pca": Image({"feature_dim": str(D), "num_components": "2", "mini_batch_size": "100"},
                 lambda tmp: {"train": ([_recordio(tmp / "train.rec", X)], None)},
                 "projections", ("projection",), _projection, FEATURE_DIM_ERRORS),
    "knn": Image({"k": "3", "feature_dim": str(D), "sample_size": "300", "predictor_type": "classifier"},
                 lambda tmp: {"train": ([_csv(tmp / "train.csv", X, Y)], "text/csv")},
                 "predictions", ("predicted_label",), bad_requests=FEATURE_DIM_ERRORS),
    "rcf": Image({"feature_dim": str(D), "num_trees": "50", "num_samples_per_tree": "32"},
                 lambda tmp: {"train": ([_recordio(tmp / "train.rec", X)], None)},
                 "scores", ("score",), _forest_score, FEATURE_DIM_ERRORS),
    "fm": Image({"feature_dim": str(D), "num_factors": "2", "predictor_type": "regressor", "epochs": "2",
                 "mini_batch_size": "100"},
                lambda tmp: {"train": ([_recordio(tmp / "train.rec", X, TARGET)], None)},
                "predictions", ("score",), bad_requests=[
                    (json.dumps({"instances": [[1.0, 2.0, 3.0]]}), ct.JSON, 400,
                     "Row 1 of request has 3 features but the model's feature_dim is 4.")]),
    "xgboost": Image({"num_round": "5", "objective": "binary:logistic", "max_depth": "2"},
                     lambda tmp: {"train": ([_csv(tmp / "train.csv", X, Y)], "text/csv")},
                     "predictions", ("score",)),
    "lightgbm": Image({"num_boost_round": "5", "early_stopping_rounds": "0"},
                      lambda tmp: {"train": ([_csv(tmp / "train.csv", X, Y)], "text/csv")},
                      None, ("probabilities-1d", "probabilities")),
    "catboost": Image({"iterations": "5", "learning_rate": "0.3"},
                      lambda tmp: {"training": ([_csv(tmp / "train.csv", X, Y)], "text/csv")},
                      None, ("probabilities",)),
}


def _bodies(rows: np.ndarray) -> dict[str, tuple[str, bytes | str]]:
    """Every way a client sends the rows, by name: (Content-Type, body)."""
    values = [[float(v) for v in row] for row in rows]
    sparse = [{"keys": list(range(len(row))), "shape": [len(row)], "values": row} for row in values]
    return {
        "csv": (ct.CSV, "".join(",".join(repr(v) for v in row) + "\n" for row in values)),
        "libsvm": (ct.LIBSVM, "".join(" ".join(f"{i}:{v!r}" for i, v in enumerate(row)) + "\n" for row in values)),
        # the three dense instance forms docs/data.md lists
        "json": (ct.JSON, json.dumps({"instances": [values[0], {"features": values[1]},
                                                    {"data": {"features": {"values": values[2]}}}]})),
        "json-sparse": (ct.JSON, json.dumps({"instances": [{"data": {"features": s}} for s in sparse]})),
        "jsonlines": (ct.JSONLINES, "".join(json.dumps({"features": row}) + "\n" for row in values)),
        "recordio": (ct.RECORDIO, encode_dense(rows.astype(np.float64))),  # what the SDK's serializer sends
        "recordio-sparse": (ct.RECORDIO, encode_sparse(sp.csr_matrix(rows))),
    }


def _pairs(inference: dict[str, Any]) -> list[tuple[str, str]]:
    """(body name, Accept) for every Content-Type x Accept pair the image lists."""
    return [(body, accept) for body, (content_type, _) in _bodies(ROWS).items()
            if content_type in inference["content_types"] for accept in inference["accept_types"]]


@dataclass
class Served:
    image: str
    url: str
    model: Algorithm
    inference: dict[str, Any]
    expected: Columns  # the model's predict on ROWS, here


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    image = request.param
    spec = IMAGES[image]
    tmp = tmp_path_factory.mktemp(image)
    base = tmp / "ml"
    write_job(base, spec.hyperparameters, spec.channels(tmp))
    result = train(image, base)
    assert result.returncode == 0, result.stdout + result.stderr
    algorithm = load_algorithm(image)
    model = algorithm.load(base / "model")
    batch = model.request_reader(MediaType.parse(ct.CSV)).parse(_bodies(ROWS)["csv"][1].encode())
    expected = model.predict(batch, Options())
    with serving(image, base) as (url, _):
        yield Served(image, url, model, algorithm.describe()["inference"], expected)


def _first_body(served: Served) -> tuple[str, bytes | str]:
    """(Content-Type, body) of the first way of sending the rows that the image takes (CSV where it does)."""
    return next(pair for pair in _bodies(ROWS).values() if pair[0] in served.inference["content_types"])


def _post(url: str, body: bytes | str, content_type: str, accept: str | None = None) -> requests.Response:
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept is not None else {})}
    # Generous: with a cold numba cache the first request of each content type compiles its reader's kernels.
    return requests.post(url + "/invocations", data=body, headers=headers, timeout=180)


def _flat(value: Any) -> list[float]:
    if isinstance(value, list):
        return [number for item in value for number in _flat(item)]
    return [math.nan if value is None else float(value)]


def _records(columns: Columns) -> list[dict[str, list[float]]]:
    """Per row, each column's numbers (a vector column's flattened)."""
    rows = len(next(iter(columns.values())))
    return [{name: _flat(np.asarray(values[i]).tolist()) for name, values in columns.items()} for i in range(rows)]


def _csv_rows(columns: Columns, layout: ResponseLayout) -> list[list[float]]:
    names = [n for n in layout.csv_columns if n in columns] if layout.csv_columns is not None else list(columns)
    return [[number for name in names for number in record[name]] for record in _records(columns)]


def _decoded(response: requests.Response, accept: str, layout: ResponseLayout) -> list[Any]:
    """The body, one entry per row: {column: numbers}, or for CSV the row's numbers."""
    if accept == ct.JSON:
        document = response.json()
        if layout.envelope is None:  # one object of column arrays
            rows = {len(values) for values in document.values()}
            assert len(rows) == 1, document
            return [{name: _flat(values[i]) for name, values in document.items()} for i in range(rows.pop())]
        assert list(document) == [layout.envelope], document
        return [{name: _flat(value) for name, value in record.items()} for record in document[layout.envelope]]
    if accept == ct.JSONLINES:
        assert response.text.endswith("\n")
        return [{name: _flat(value) for name, value in json.loads(line).items()}
                for line in response.text.splitlines()]
    if accept == ct.RECORDIO:
        return decode_label_records(response.content)
    assert accept == ct.CSV, accept
    return [[math.nan if cell == "" else float(cell) for cell in line.split(",")]
            for line in response.text.splitlines()]


def _assert_same_predictions(got: list[Any], served: Served, accept: str) -> None:
    want = _csv_rows(served.expected, served.model.response_layout) if accept == ct.CSV else _records(
        served.expected)
    assert len(got) == len(ROWS), f"{len(got)} rows answered for {len(ROWS)} sent: {got}"
    for row, (got_row, want_row) in enumerate(zip(got, want)):
        if isinstance(want_row, dict):
            assert list(got_row) == list(want_row), f"row {row}"
            got_row, want_row = [n for v in got_row.values() for n in v], [n for v in want_row.values() for n in v]
        np.testing.assert_allclose(got_row, want_row, rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=f"row {row}")


def _check_pair(served: Served, body: str, accept: str) -> None:
    content_type, payload = _bodies(ROWS)[body]
    response = _post(served.url, payload, content_type, accept)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == accept
    _assert_same_predictions(_decoded(response, accept, served.model.response_layout), served, accept)


# One test per image (its server started once): a failure lists every pair that failed, and why.
@pytest.mark.parametrize("served", list(IMAGES), indirect=True, scope="module")
def test_every_content_type_and_accept_answer_the_same_predictions(served: Served) -> None:
    pairs = _pairs(served.inference)
    assert {_bodies(ROWS)[body][0] for body, _ in pairs} == set(served.inference["content_types"])
    failures = []
    for body, accept in pairs:
        try:
            _check_pair(served, body, accept)
        except (AssertionError, requests.RequestException) as exc:
            failures.append(f"{served.image}: {body} ({_bodies(ROWS)[body][0]}) -> Accept {accept}: {exc}")
    assert not failures, f"{len(failures)} of {len(pairs)} pairs failed:\n" + "\n".join(failures)


@pytest.mark.parametrize("served", list(IMAGES), indirect=True, scope="module")
def test_no_accept_or_any_answers_the_default_accept(served: Served) -> None:
    default = served.inference["default_accept"]
    assert default in served.inference["accept_types"]
    content_type, payload = _first_body(served)
    for accept in (None, "*/*"):
        response = _post(served.url, payload, content_type, accept)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == default
        _assert_same_predictions(_decoded(response, default, served.model.response_layout), served, default)


@pytest.mark.parametrize("served", list(IMAGES), indirect=True, scope="module")
def test_an_unsupported_accept_is_406_naming_the_supported_ones(served: Served) -> None:
    content_type, payload = _first_body(served)
    supported = served.inference["accept_types"]
    unsupported = ["text/html"] + [t for t in (ct.JSON, ct.JSONLINES, ct.RECORDIO, ct.CSV) if t not in supported]
    for accept in unsupported:
        response = _post(served.url, payload, content_type, accept)
        assert (response.status_code, response.text) == (
            406, f"Accept '{accept}' is not supported; use one of: {', '.join(supported)}.\n")


@pytest.mark.parametrize("served", list(IMAGES), indirect=True, scope="module")
def test_an_unsupported_content_type_is_415_naming_the_supported_ones(served: Served) -> None:
    supported = served.inference["content_types"]
    unsupported = ["text/plain"] + [t for t in (ct.CSV, ct.JSON, ct.JSONLINES, ct.RECORDIO) if t not in supported]
    for content_type in unsupported:
        response = _post(served.url, _bodies(ROWS)["csv"][1], content_type)
        assert (response.status_code, response.text) == (
            415, f"Content-Type '{content_type}' is not supported; use one of: {', '.join(supported)}.\n")


@pytest.mark.parametrize("served", list(IMAGES), indirect=True, scope="module")
def test_the_predictions_are_what_the_model_computes(served: Served) -> None:
    spec = IMAGES[served.image]
    assert (served.model.response_layout.envelope, tuple(served.expected)) == (spec.envelope, spec.columns)
    content_type, payload = _first_body(served)
    response = _post(served.url, payload, content_type, ct.JSONLINES)
    assert response.status_code == 200, response.text
    got = {name: np.asarray([json.loads(line)[name] for line in response.text.splitlines()])
           for name in served.expected}
    assert [len(values) for values in got.values()] == [len(ROWS)] * len(got)
    if spec.expect is not None:
        spec.expect(served.model, ROWS, got)


@pytest.mark.parametrize("served", [image for image, spec in IMAGES.items() if spec.bad_requests], indirect=True,
                         scope="module")
def test_a_bad_row_is_a_400_naming_it(served: Served) -> None:
    for body, content_type, status, text in IMAGES[served.image].bad_requests:
        response = _post(served.url, body, content_type)
        assert (response.status_code, response.text.rstrip("\n")) == (status, text)


def test_every_image_with_an_algorithm_of_its_own_is_checked() -> None:
    from tests.conftest import algorithm_names

    assert sorted(IMAGES) == sorted(set(algorithm_names()) - {"sklearn"})  # sklearn serves the user's script
