"""The known bad bodies (tests/fuzz/corpus.py) as regression tests in the default run.

Reader level: each body in a child process (a crash in a numba kernel fails the test instead of ending the run),
parse and batches both giving the expected shape or a UserError. Serving level: each body POSTed through the
Flask app of k-means, PCA, factorization machines and XGBoost for every content type they accept: a 4xx with a
readable one-line message, or a 200, never a 5xx. `make fuzz` searches for new ones.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest

from common.errors import UserError
from common.serving.app import create_app
from tests.fuzz.checks import check_reader, parsed_values
from tests.fuzz.corpus import KNOWN_BAD, REFUSED, ROWS_OR_REFUSED, STILL_FAILING, Rows
from tests.fuzz.isolation import Isolated

KIND = {"text/csv": "csv", "application/json": "json", "application/jsonlines": "jsonlines",
        "application/x-recordio-protobuf": "recordio", "text/libsvm": "libsvm"}
OPTIONS = {"csv": 0, "json": 0, "jsonlines": 0, "recordio": 0, "libsvm": 1}


@pytest.fixture(scope="module")
def child():
    with Isolated(timeout=60) as isolated:
        yield isolated


def _id(entry: tuple) -> str:
    kind, body, expected = entry
    return f"{kind}-{len(body)}B-{body[:12]!r}"


def _param(*values: object, body: bytes, id: str) -> object:
    reason = STILL_FAILING.get(body)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(*values, marks=marks, id=id)


@pytest.mark.parametrize("entry", [_param(e, body=e[1], id=_id(e)) for e in KNOWN_BAD])
def test_reader(child: Isolated, entry: tuple) -> None:
    kind, body, expected = entry
    for option in ((0, 1) if kind == "libsvm" else (OPTIONS[kind],)):
        outcome = child.call(check_reader, kind, option, body, max(7, len(body) // 16), 1000)
        if isinstance(expected, Rows):
            assert outcome == ("ok", expected.n, expected.width), outcome
        elif expected == REFUSED:
            assert outcome[0] == "user_error", outcome
        else:
            assert expected == ROWS_OR_REFUSED and outcome[0] in ("ok", "user_error"), outcome


def test_empty_csv_fields_are_nan(child: Isolated) -> None:
    values = child.call(parsed_values, "csv", 0, b",,,\n" * 4)
    assert values.shape == (4, 4) and np.isnan(values).all()
    assert child.call(parsed_values, "csv", 0, b"inf,1e400,-inf,-1e400\n").tolist() == [[np.inf, np.inf, -np.inf,
                                                                                           -np.inf]]


@pytest.mark.parametrize("damage", ["truncated", "flipped", "bad header"])
def test_corrupt_gzip_in_a_training_channel_is_the_users(damage: str) -> None:
    from common.channels import maybe_gunzip
    from common.data.csv_reader import CsvReader

    packed = bytearray(gzip.compress(b"1,2,3\n" * 5000))
    if damage == "truncated":
        packed = packed[: len(packed) // 2]
    elif damage == "flipped":
        packed[len(packed) // 2] ^= 0xFF
    else:
        packed[3] = 0xFF  # reserved flag bits
    stream = maybe_gunzip(io.BytesIO(bytes(packed)), "train/part-0.csv.gz")
    with pytest.raises(UserError, match="train/part-0.csv.gz"):
        list(CsvReader().batches(stream, "train/part-0.csv.gz", 1000))


# ---- serving ---------------------------------------------------------------------------------------------------
def _kmeans(folder: Path) -> type:
    from algorithms.kmeans.algorithm import KMeans

    KMeans(np.array([[0, 0, 0, 0], [1, 1, 1, 1]], np.float32)).save(folder)
    return KMeans


def _pca(folder: Path) -> type:
    from algorithms.pca.algorithm import PCA

    PCA(np.array([3.0, 4.0]), np.ones((4, 2))).save(folder)
    return PCA


def _fm(folder: Path) -> type:
    from algorithms.fm.algorithm import FactorizationMachines

    FactorizationMachines(np.zeros(1), np.full(4, 0.5), np.full((4, 2), 0.1), "binary_classifier").save(folder)
    return FactorizationMachines


def _xgboost(folder: Path) -> type:
    import xgboost as xgb

    from algorithms.xgboost.algorithm import XGBoost

    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(x, label=(x[:, 0] > 0).astype(float)), 2)
    (folder / "xgboost-model").write_bytes(bytes(booster.save_raw("ubj")))
    return XGBoost


MODELS = {"kmeans": _kmeans, "pca": _pca, "fm": _fm, "xgboost": _xgboost}
REQUEST_TYPES = {"kmeans": ("text/csv", "application/json", "application/jsonlines", "application/x-recordio-protobuf"),
                 "pca": ("text/csv", "application/json", "application/jsonlines", "application/x-recordio-protobuf"),
                 "fm": ("application/json", "application/jsonlines", "application/x-recordio-protobuf"),
                 "xgboost": ("text/csv", "text/libsvm", "application/x-recordio-protobuf", "application/json",
                             "application/jsonlines")}
CASES = [_param(name, content_type, index, body=entry[1], id=f"{name}-{content_type}-{_id(entry)}")
         for name, types in REQUEST_TYPES.items() for content_type in types
         for index, entry in enumerate(KNOWN_BAD) if KIND[content_type] == entry[0]]


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = {}
    for name, make in MODELS.items():
        folder = tmp_path_factory.mktemp(name)
        algorithm = make(folder)
        out[name] = (algorithm, create_app(algorithm, folder).test_client())
    return out


def test_request_types_are_the_images(clients: dict) -> None:
    assert {name: algorithm.request_types for name, (algorithm, _) in clients.items()} == REQUEST_TYPES


@pytest.mark.parametrize(("name", "content_type", "index"), CASES)
def test_serving_answers_4xx_with_a_message(clients: dict, name: str, content_type: str, index: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", raising=False)
    _, body, expected = KNOWN_BAD[index]
    client = clients[name][1]
    response = client.post("/invocations", data=body, headers={"Content-Type": content_type})
    assert response.status_code < 500, f"{response.status_code} {response.data[:200]!r}"
    if expected == REFUSED:
        assert 400 <= response.status_code < 500, response.status_code
    if response.status_code >= 400:
        message = response.data.decode("utf-8")
        assert message.endswith("\n") and message.strip() and "\n" not in message.strip(), message
        assert "Traceback" not in message and len(message) < 1000, message
