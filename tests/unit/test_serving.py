"""The HTTP contract through the Flask app (no gunicorn): statuses, bodies, content negotiation."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithms.kmeans.algorithm import KMeans
from common.data.recordio_writer import encode_dense, encode_sparse
from common.serving.app import create_app
from tests.responses import decode_label_records

CSV_BODY = b"1,1\n9,10"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", raising=False)
    monkeypatch.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "6")
    KMeans(np.array([[0, 0], [10, 10]], np.float32)).save(tmp_path)
    return create_app(KMeans, tmp_path).test_client()


def _post(client, body: bytes, content_type: str | None = "text/csv", accept: str | None = None):
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    return client.post("/invocations", data=body, headers=headers)


def test_ping_and_execution_parameters(client) -> None:
    assert client.get("/ping").status_code == 200
    assert client.get("/execution-parameters").get_json()["BatchStrategy"] == "MULTI_RECORD"


def test_spec_example_in_every_response_format(client) -> None:
    response = _post(client, CSV_BODY)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == {"predictions": [
        {"closest_cluster": 0.0, "distance_to_cluster": 1.4142135381698608},
        {"closest_cluster": 1.0, "distance_to_cluster": 1.0}]}
    json_body = b'{"instances": [{"features": [1, 1]}, {"data": {"features": {"values": [9, 10]}}}]}'
    lines = _post(client, json_body, "application/json", "application/jsonlines")
    assert lines.data == (b'{"closest_cluster": 0.0, "distance_to_cluster": 1.4142135381698608}\n'
                          b'{"closest_cluster": 1.0, "distance_to_cluster": 1.0}\n')
    assert _post(client, json_body, "application/json", "text/csv").data == b"0.0,1.4142135381698608\n1.0,1.0\n"
    assert _post(client, CSV_BODY, "text/csv", "*/*").mimetype == "application/json"


def test_recordio_in_and_out_one_record_per_row(client) -> None:
    body = encode_dense(np.array([[1, 1], [9, 10]], np.float64))  # the SDK's RecordSerializer sends float64
    response = _post(client, body, "application/x-recordio-protobuf", "application/x-recordio-protobuf")
    assert response.status_code == 200 and response.mimetype == "application/x-recordio-protobuf"
    assert decode_label_records(response.data) == [
        {"closest_cluster": [0.0], "distance_to_cluster": [1.4142135381698608]},
        {"closest_cluster": [1.0], "distance_to_cluster": [1.0]}]
    sparse = encode_sparse(sp.csr_matrix(np.array([[1.0, 0.0], [9.0, 10.0]], np.float32)))
    assert [p["closest_cluster"] for p in _post(client, sparse, "application/x-recordio-protobuf").get_json()[
        "predictions"]] == [0.0, 1.0]


def test_jsonlines_request(client) -> None:
    response = _post(client, b'{"features": [1, 1]}\n{"features": [9, 10]}\n', "application/jsonlines")
    assert [p["closest_cluster"] for p in response.get_json()["predictions"]] == [0.0, 1.0]


@pytest.mark.parametrize("body,content_type,accept,status,message", [
    (CSV_BODY, "image/png", None, 415,
     "Content-Type 'image/png' is not supported; use one of: text/csv, application/json, application/jsonlines, "
     "application/x-recordio-protobuf."),
    (CSV_BODY, None, None, 415, "The request has no Content-Type; use one of: text/csv, application/json, "
                                "application/jsonlines, application/x-recordio-protobuf."),
    (CSV_BODY, "text/csv", "text/html", 406, "Accept 'text/html' is not supported; use one of: application/json, "
                                             "application/jsonlines, application/x-recordio-protobuf, text/csv."),
    (b"1,2,3\n", "text/csv", None, 400, "Row 1 of request has 3 features but the model's feature_dim is 2."),
    (b"1,2\n3,x\n", "text/csv", None, 400, "Line 2 of request, column 2: 'x' is not a number."),
    (b"1,2\nnan,1\n", "text/csv", None, 400, "Row 2 of request, column 1 is empty or NaN, and this algorithm needs "
                                            "a value in every field (only XGBoost, LightGBM and CatBoost read missing "
                                            "values); fill or drop it."),
    (b"1,2\n1,1e39\n", "text/csv", None, 400, "Row 2 of request, column 2 is inf (infinite, or beyond float32's "
                                             "range of about ±3.4e38); values must be finite numbers."),
    (b"", "text/csv", None, 400, "The request body is empty; send at least one row."),
    (b"{", "application/json", None, 400, "The body of request is not valid JSON: Expecting property name "
                                          "enclosed in double quotes."),
    (b"\x0a\x23\xd7\xce\xff\xff\xff\x0f", "application/x-recordio-protobuf", None, 400, None),
])
def test_errors_are_one_readable_sentence(client, body, content_type, accept, status, message) -> None:
    response = _post(client, body, content_type, accept)
    assert response.status_code == status
    assert response.mimetype == "text/plain"
    text = response.data.decode().strip()
    if message:
        assert text == message
    assert "\n" not in text and "Traceback" not in text


def test_payload_limit_is_413(client) -> None:
    response = _post(client, b"1,1\n" * ((6 << 20) // 4 + 10))
    assert response.status_code == 413
    assert response.data.decode().strip() == ("The request body is larger than 6 MB; raise "
                                               "SAGEMAKER_MAX_PAYLOAD_IN_MB or send less.")


def test_default_accept_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read when the model is loaded, as every setting is: a request reads no environment."""
    monkeypatch.setenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
    KMeans(np.array([[0, 0], [10, 10]], np.float32)).save(tmp_path)
    assert _post(create_app(KMeans, tmp_path).test_client(), CSV_BODY).data == b"0.0,1.4142135381698608\n1.0,1.0\n"


def test_unloadable_model_fails_ping_but_server_answers(tmp_path: Path) -> None:
    (tmp_path / "model_algo-1").write_bytes(b"not a model")
    client = create_app(KMeans, tmp_path).test_client()
    ping = client.get("/ping")
    assert ping.status_code == 500 and b"model_algo-1" in ping.data
    assert _post(client, CSV_BODY).status_code == 503
    assert json.dumps(ping.data.decode())


def test_empty_body_is_the_algorithms_declared_status(client, tmp_path: Path) -> None:
    """XGBoost declares empty_body_status=204 (its image answers so, before any check); others keep the 400."""
    import xgboost as xgb

    from algorithms.xgboost.algorithm import XGBoost

    x = np.array([[0.0, 1.0], [1.0, 0.0]] * 5)
    folder = tmp_path / "xgboost"
    folder.mkdir()
    XGBoost([xgb.train({}, xgb.DMatrix(x, label=x[:, 0]), 2)]).save(folder)
    xgboost_client = create_app(XGBoost, folder).test_client()
    for body, content_type in ((b"", "text/csv"), (b" \n", "text/csv"), (b"", "image/png"), (b"", None)):
        response = _post(xgboost_client, body, content_type)
        assert (response.status_code, response.data) == (204, b""), (body, content_type)
    assert _post(xgboost_client, b"1,0\n", "text/csv").status_code == 200
    refused = _post(client, b"", "text/csv")  # k-means
    assert (refused.status_code, refused.data) == (400, b"The request body is empty; send at least one row.\n")


def test_compute_thread_settings_fill_only_what_the_user_left_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    from common.serving.gunicorn import THREAD_VARIABLES, limit_compute_threads

    for name in (*THREAD_VARIABLES, "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    limit_compute_threads(2)
    assert [os.environ[name] for name in THREAD_VARIABLES] == ["2", "3", "2", "2"]
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    limit_compute_threads(2)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


class _StalledStream(io.BytesIO):
    """A request body whose client stopped sending: the server's stream raises TimeoutError at its deadline."""

    def read(self, size: int | None = -1) -> bytes:
        raise TimeoutError("The request body did not arrive within 5 s; send it without pauses or raise "
                           "SAGEMAKER_MODEL_SERVER_READ_TIMEOUT.")


@pytest.mark.parametrize("length", ["100", ""])  # announced, and chunked
def test_a_body_that_does_not_arrive_in_time_is_408(client, length: str) -> None:
    response = client.post("/invocations", input_stream=_StalledStream(b"1,1"), headers={"Content-Type": "text/csv"},
                           environ_overrides={"CONTENT_LENGTH": length})
    assert response.status_code == 408
    assert response.data == (b"The request body did not arrive within 5 s; send it without pauses or raise "
                             b"SAGEMAKER_MODEL_SERVER_READ_TIMEOUT.\n")


def test_predictions_run_at_most_concurrent_predictions_at_once(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    KMeans(np.array([[0, 0], [10, 10]], np.float32)).save(tmp_path)
    running, most, lock = [0], [0], threading.Lock()
    predict = KMeans.predict

    def slow_predict(self, *args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(KMeans, "predict", slow_predict)
    app = create_app(KMeans, tmp_path, concurrent_predictions=2)
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(_post(app.test_client(), CSV_BODY).status_code))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6 and most[0] == 2


@pytest.mark.parametrize("head,ping", [
    (b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (b"GET /ping?probe=1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /invocations HTTP/1.1\r\n", True),
    (b"GET /ping HTTP/1.1\r\nHost: x\r\n", False),  # headers still arriving: could stall a ping thread
    (b"GET /ping HTTP/1.1\r\nContent-Length: 100\r\n\r\n12", False),  # a body to wait for
    (b"GET /ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", False),
    (b"GET /pingpong HTTP/1.1\r\n\r\n", False),
    (b"POST /ping HTTP/1.1\r\n\r\n", False),
    (b"", False),
])
def test_only_complete_bodiless_pings_take_the_ping_threads(head: bytes, ping: bool) -> None:
    from common.serving.worker import is_ping

    assert is_ping(head) is ping


def test_server_reads_on_more_threads_than_it_predicts_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from common.serving.gunicorn import read_timeout_seconds, server_settings

    for name in ("SAGEMAKER_MODEL_SERVER_THREADS", "SAGEMAKER_MODEL_SERVER_READ_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    settings = server_settings()
    assert (settings["threads"], settings["concurrent_predictions"], read_timeout_seconds()) == (64, 4, 5)
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_THREADS", "40")
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_READ_TIMEOUT", "30")
    settings = server_settings()
    assert (settings["threads"], settings["concurrent_predictions"], read_timeout_seconds()) == (80, 40, 30)
