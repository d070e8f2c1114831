"""Batch transform and inference pipelines run locally the way SageMaker's agent runs them (tools/transform.py,
tools/pipeline.py): real models trained through the entrypoint, real gunicorn servers."""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from algorithms.kmeans.algorithm import KMeans
from algorithms.pca.algorithm import PCA
from common.data import content_types as ct
from common.data.recordio_writer import encode_dense
from common.serving.app import invoke
from tests.integration.helpers import train
from tools import data_processing as dp
from tools import transform_job
from tools.local import write_job
from tools.model_server import Answer
from tools.pipeline import Container, Pipeline
from tools.sm_local import main as sm_local
from tools.transform import run_job, run_transform
from tools.transform_job import InputFile, TransformError, TransformJob, input_files

ONE_WORKER = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
X, _ = make_blobs(n_samples=3000, centers=3, n_features=6, random_state=3)
X = X.astype(np.float32)


def _train(tmp: Path, algorithm: str, rows: np.ndarray, hyperparameters: dict[str, str], name: str = "") -> Path:
    base = tmp / (name or algorithm)
    base.mkdir()
    data = tmp / f"{base.name}.csv"
    np.savetxt(data, rows, delimiter=",", fmt="%.6f")
    write_job(base, hyperparameters, {"train": ([data], "text/csv")})
    result = train(algorithm, base)
    assert result.returncode == 0, result.stdout + result.stderr
    return base / "model"


@pytest.fixture(scope="module")
def kmeans_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("kmeans"), "kmeans", X, {"k": "3", "feature_dim": "6"})


@pytest.fixture(scope="module")
def pca_then_kmeans(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("pipeline")
    pca_dir = _train(tmp, "pca", X, {"feature_dim": "6", "num_components": "3", "mini_batch_size": "500"})
    body, _ = invoke(PCA.load(pca_dir), _csv(X), "text/csv", "application/json")
    projections = np.array([row["projection"] for row in json.loads(body)["projections"]], dtype=np.float32)
    kmeans_dir = _train(tmp, "kmeans", projections, {"k": "3", "feature_dim": "3"}, "kmeans-of-projections")
    return pca_dir, kmeans_dir


def _csv(rows: np.ndarray, ids: bool = False) -> bytes:
    lines = [",".join(([str(i)] if ids else []) + [f"{v:.6f}" for v in row]) for i, row in enumerate(rows)]
    return ("\n".join(lines) + "\n").encode()


def _expected(model_dir: Path, body: bytes, content_type: str, accept: str) -> bytes:
    return invoke(KMeans.load(model_dir), body, content_type, accept)[0]


def _transform(model_dir: Path, source: Path, out: Path, **settings: object):
    return run_transform("kmeans", model_dir, source, out, environment=ONE_WORKER, **settings)


# ---- splitting and packing, no server --------------------------------------------------------------------

class Recorder:
    """An endpoint that answers each mini-batch with its own size, recording what it was sent."""

    def __init__(self, parameters: dict | None = None) -> None:
        self.bodies: list[bytes] = []
        self.parameters = parameters or {}

    def invoke(self, body: bytes, content_type: str | None, accept: str | None = None) -> Answer:
        self.bodies.append(body)
        return Answer(200, f"{len(body)}".encode(), "text/csv")

    def execution_parameters(self) -> dict:
        return self.parameters


def test_multirecord_packs_whole_lines_up_to_the_payload(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = [",".join(map(str, rng.integers(0, 10**6, rng.integers(1, 4000)))) for _ in range(3000)]
    data = "\n".join(lines).encode()  # no final newline: the last record still counts
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv").write_bytes(data)
    endpoint = Recorder({"MaxConcurrentTransforms": 3, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1})
    job = TransformJob(content_type="text/csv", split_type="Line", assemble_with="Line")
    result = run_job(endpoint, job, input_files(tmp_path / "in", tmp_path / "out"), tmp_path / "out")
    limit = 1 << 20
    assert result.settings == {"BatchStrategy": "MultiRecord", "MaxPayloadInMB": 1, "MaxConcurrentTransforms": 3}
    bodies = sorted(endpoint.bodies, key=lambda body: data.find(body[:100]))  # sent three at a time
    assert b"".join(bodies) == data and len(bodies) >= 3
    assert all(len(body) <= limit for body in bodies)
    for body, following in zip(bodies, bodies[1:]):
        assert body.endswith(b"\n")
        assert len(body) + following.index(b"\n") + 1 > limit  # the next record would not have fitted
    assert result.records == len(lines)
    out = (tmp_path / "out" / "rows.csv.out").read_text().splitlines()
    assert out == [str(len(body)) for body in bodies]  # in input order, a line per answer


def test_single_record_and_gzip(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv.gz").write_bytes(gzip.compress(b"1,2\n\n3,4\n5,6"))
    endpoint = Recorder()
    job = TransformJob(content_type="text/csv", split_type="Line", batch_strategy="SingleRecord",
                       compression_type="Gzip")
    result = run_job(endpoint, job, input_files(tmp_path / "in", tmp_path / "out"), tmp_path / "out")
    assert endpoint.bodies == [b"1,2\n", b"3,4\n", b"5,6"]  # blank lines are not records
    assert result.settings["MaxConcurrentTransforms"] == 1 and result.settings["MaxPayloadInMB"] == 6
    assert (tmp_path / "out" / "rows.csv.gz.out").read_bytes() == b"443"  # AssembleWith=None: as they are


def test_recordio_records_stay_whole() -> None:
    frames = encode_dense(np.arange(12, dtype=np.float32).reshape(6, 2))
    source = InputFile(Path("x.rec"), "x.rec")
    batches = list(transform_job._pack(source, transform_job._recordio_records(io.BytesIO(frames)), 1 << 20, True))
    assert len(batches) == 1 and batches[0].payload == frames and batches[0].records == 6
    single = list(transform_job._pack(source, transform_job._recordio_records(io.BytesIO(frames)), 1 << 20, False))
    assert b"".join(b.payload for b in single) == frames and [b.records for b in single] == [1] * 6
    with pytest.raises(ValueError, match="RecordIO magic"):
        list(transform_job._recordio_records(io.BytesIO(b"1,2,3\n4,5,6\n")))


def test_json_join_outside_the_container(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "one.json").write_text('{"id": 7, "features": [1, 2]}')
    (tmp_path / "in" / "bare.json").write_text("[1, 2, 3]")
    endpoint = Recorder()  # answers each mini-batch with its size, as text/csv
    job = TransformJob(content_type="application/json", accept="text/csv", input_filter="$.features",
                       join_source="Input", output_filter="$['id','SageMakerOutput']")
    with pytest.raises(TransformError, match=r"bare.json: record 1: JSONPath '\$.features': .features needs an object"):
        run_job(endpoint, job, input_files(tmp_path / "in", tmp_path / "out"), tmp_path / "out")
    assert endpoint.bodies == [b"[1,2]\n"]  # the filtered record is what the container sees
    assert json.loads((tmp_path / "out" / "one.json.out").read_text()) == {"id": 7, "SageMakerOutput": 6}
    run_job(endpoint, replace(job, input_filter="$", output_filter="$"),
            input_files(tmp_path / "in" / "bare.json", tmp_path / "out"), tmp_path / "out")
    assert json.loads((tmp_path / "out" / "bare.json.out").read_text()) == {"SageMakerInput": [1, 2, 3],
                                                                             "SageMakerOutput": 9}


def test_join_needs_an_answer_per_record(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text("[1]\n[2]\n[3]\n")
    job = TransformJob(content_type="application/jsonlines", split_type="Line", join_source="Input")
    with pytest.raises(TransformError, match=r"mini-batch 1 \(records 1-3, 12 bytes\): the answer holds 1 records "
                                             "for 3 input records"):
        run_job(Recorder(), job, input_files(tmp_path / "rows.jsonl", tmp_path / "out"), tmp_path / "out")
    assert not (tmp_path / "out" / "rows.jsonl.out").exists()


@pytest.mark.parametrize(("path", "record", "expected"), [
    ("$", [1, 2], [1, 2]),
    ("$[1:]", ["id", "a", "b"], ["a", "b"]),
    ("$[1:2]", ["id", "a", "b", "c"], ["a", "b"]),          # both ends included, as SageMaker's examples read
    ("$[:1]", ["id", "a", "b"], ["id", "a"]),
    ("$[0,2]", ["id", "a", "b"], ["id", "b"]),
    ("$[0,-1]", ["id", "a", "b"], ["id", "b"]),
    ("$[0,2:]", ["id", "a", "b", "c"], ["id", "b", "c"]),
    ("$[-1]", ["id", "a", "b"], "b"),
    ("$.features", {"id": 1, "features": [1, 2]}, [1, 2]),
    ("$['id','out']", {"id": 1, "x": 2, "out": {"c": 0}}, {"id": 1, "out": {"c": 0}}),
    ("$.a.['b','c']", {"a": {"b": 1, "c": 2, "d": 3}}, {"b": 1, "c": 2}),
    ("$.a.*", {"a": {"b": 1, "c": 2}}, [1, 2]),
    ("$.rows[*][0]", {"rows": [[1, 2], [3, 4]]}, [1, 3]),
])
def test_jsonpath_subset(path: str, record: object, expected: object) -> None:
    assert dp.JsonPath.parse(path).apply(record) == expected


@pytest.mark.parametrize(("path", "record", "message"), [
    ("$[5]", ["a", "b", "c"], "index 5 is outside the record's 3 fields"),
    ("$[1:3]", ["a", "b", "c"], r"\[1:3\] is outside the record's 3 fields"),
    ("$.missing", {"a": 1}, "the record has no 'missing'"),
    ("$.a", ["a"], ".a needs an object, got an array"),
    ("$..a", {}, "expected a name"),
    ("$[?(@.a)]", [], "not a name list"),
    ("features", {}, "must start with \\$"),
])
def test_jsonpath_errors(path: str, record: object, message: str) -> None:
    with pytest.raises(dp.PathError, match=message):
        dp.JsonPath.parse(path).apply(record)


# ---- jobs against the real server ------------------------------------------------------------------------

def test_line_split_files_in_order_with_the_payload_limit(tmp_path: Path, kmeans_model: Path) -> None:
    rows = np.random.default_rng(1).standard_normal((30000, 6)).astype(np.float32) * 3
    inputs = tmp_path / "in"
    (inputs / "day=2").mkdir(parents=True)
    (inputs / "a.csv").write_bytes(_csv(rows))                  # about 1.9 MB: two mini-batches of 1 MB
    (inputs / "day=2" / "b.csv").write_bytes(_csv(rows[:50]))
    result = _transform(kmeans_model, inputs, tmp_path / "out", content_type="text/csv", split_type="Line",
                        accept="text/csv", assemble_with="Line", max_payload_mb=1, max_concurrent=2)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
                  if p.is_file()) == ["a.csv.out", "day=2/b.csv.out"]
    assert result.mini_batches == 3 and result.records == 30050
    assert result.settings == {"BatchStrategy": "MultiRecord", "MaxPayloadInMB": 1, "MaxConcurrentTransforms": 2}
    expected = _expected(kmeans_model, _csv(rows), "text/csv", "text/csv")
    assert (tmp_path / "out" / "a.csv.out").read_bytes() == expected
    assert (tmp_path / "out" / "day=2" / "b.csv.out").read_bytes() == _expected(kmeans_model, _csv(rows[:50]),
                                                                                  "text/csv", "text/csv")


def test_recordio_split_multi_and_single_record(tmp_path: Path, kmeans_model: Path) -> None:
    frames = encode_dense(X[:40])
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.rec").write_bytes(frames)
    expected = _expected(kmeans_model, frames, ct.RECORDIO, "application/jsonlines")
    for strategy, batches in (("MultiRecord", 1), ("SingleRecord", 40)):
        out = tmp_path / strategy
        result = _transform(kmeans_model, tmp_path / "in", out, content_type=ct.RECORDIO, split_type="RecordIO",
                            accept="application/jsonlines", batch_strategy=strategy, assemble_with="Line")
        assert result.mini_batches == batches and result.records == 40
        assert (out / "rows.rec.out").read_bytes() == expected


def test_split_none_posts_each_file_whole(tmp_path: Path, kmeans_model: Path) -> None:
    (tmp_path / "in").mkdir()
    body = json.dumps({"instances": [{"features": row} for row in X[:5].tolist()]}).encode()
    (tmp_path / "in" / "rows.json").write_bytes(body)
    result = _transform(kmeans_model, tmp_path / "in", tmp_path / "out", content_type="application/json",
                        accept="application/json")
    assert result.mini_batches == 1
    answer = json.loads((tmp_path / "out" / "rows.json.out").read_bytes())
    assert answer == json.loads(_expected(kmeans_model, body, "application/json", "application/json"))


def test_csv_input_filter_join_and_output_filter(tmp_path: Path, kmeans_model: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv").write_bytes(_csv(X[:300], ids=True))
    _transform(kmeans_model, tmp_path / "in", tmp_path / "out", content_type="text/csv", split_type="Line",
               accept="text/csv", assemble_with="Line", batch_strategy="MultiRecord",
               input_filter="$[1:]", join_source="Input", output_filter="$[0,-2]")
    clusters = _expected(kmeans_model, _csv(X[:300]), "text/csv", "text/csv").decode().splitlines()
    expected = [f"{i},{line.split(',')[0]}" for i, line in enumerate(clusters)]
    assert (tmp_path / "out" / "rows.csv.out").read_text().splitlines() == expected


def test_jsonlines_join_keeps_the_id(tmp_path: Path, kmeans_model: Path) -> None:
    (tmp_path / "in").mkdir()
    lines = [json.dumps({"id": f"r{i}", "features": row}) for i, row in enumerate(X[:20].tolist())]
    (tmp_path / "in" / "rows.jsonl").write_text("\n".join(lines) + "\n")
    _transform(kmeans_model, tmp_path / "in", tmp_path / "out", content_type="application/jsonlines",
               split_type="Line", accept="application/jsonlines", assemble_with="Line",
               input_filter="$.features", join_source="Input", output_filter="$['id','SageMakerOutput']")
    out = [json.loads(line) for line in (tmp_path / "out" / "rows.jsonl.out").read_text().splitlines()]
    body = "\n".join(json.dumps(row) for row in X[:20].tolist()).encode()
    answers = [json.loads(line) for line in _expected(kmeans_model, body, "application/jsonlines",
                                                        "application/jsonlines").splitlines()]
    assert out == [{"id": f"r{i}", "SageMakerOutput": answer} for i, answer in enumerate(answers)]


def test_failed_files_are_named_and_get_no_out(tmp_path: Path, kmeans_model: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.csv").write_bytes(_csv(X[:3]))
    (inputs / "huge.csv").write_bytes(_csv(X[:2]) + b",".join([b"1.0"] * 300_000) + b"\n")  # record 3: 1.2 MB
    (inputs / "ragged.csv").write_bytes(_csv(X[:1]) + b"1,2\n" + _csv(X[:1]))
    with pytest.raises(TransformError) as failure:
        _transform(kmeans_model, inputs, tmp_path / "out", content_type="text/csv", split_type="Line",
                   accept="text/csv", batch_strategy="SingleRecord", max_payload_mb=1)
    message = str(failure.value)
    assert "2 of 3 input files failed" in message
    assert "huge.csv: record 3 is 1,200,000 bytes, larger than MaxPayloadInMB=1 (1,048,576 bytes)" in message
    assert "ragged.csv: mini-batch 2 (record 2, 4 bytes): the server answered 400: " in message
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.csv.out"]


def test_a_model_folder_that_does_not_load(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_bytes(b"1,2\n")
    with pytest.raises(TransformError, match="is empty: it holds no model"):
        (tmp_path / "empty").mkdir()
        run_transform("kmeans", tmp_path / "empty", tmp_path / "in.csv", tmp_path / "out", content_type="text/csv")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model_algo-1").write_bytes(b"not a model")
    with pytest.raises(TransformError, match=r"the kmeans model in .*bad did not load: "):
        run_transform("kmeans", tmp_path / "bad", tmp_path / "in.csv", tmp_path / "out", content_type="text/csv",
                      environment=ONE_WORKER)
    assert not (tmp_path / "out" / "in.csv.out").exists()


def test_sm_local_transform(tmp_path: Path, kmeans_model: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "rows.csv").write_bytes(_csv(X[:10]))
    code = sm_local(["transform", "--algorithm", "kmeans", "--model", str(kmeans_model), "--input",
                     str(tmp_path / "rows.csv"), "--output", str(tmp_path / "out"), "--content-type", "text/csv",
                     "--split-type", "Line", "--accept", "text/csv", "--assemble-with", "Line", "--env",
                     "SAGEMAKER_MODEL_SERVER_WORKERS=1"])
    assert code == 0
    assert "transformed 1 file(s): 10 records in 1 mini-batches" in capsys.readouterr().out
    assert (tmp_path / "out" / "rows.csv.out").read_bytes() == _expected(kmeans_model, _csv(X[:10]), "text/csv",
                                                                         "text/csv")
    assert sm_local(["transform", "--algorithm", "kmeans", "--input", "x", "--output", "y"]) == 2


@pytest.mark.skipif(ct.CSV not in PCA.response_types, reason="the pca image does not answer text/csv")
def test_pca_then_kmeans_pipeline(tmp_path: Path, pca_then_kmeans: tuple[Path, Path]) -> None:
    pca_dir, kmeans_dir = pca_then_kmeans
    rows = X[:200]
    projections, content_type = invoke(PCA.load(pca_dir), _csv(rows), "text/csv", "text/csv")
    expected = invoke(KMeans.load(kmeans_dir), projections, content_type, "application/jsonlines")[0]
    containers = [Container("pca", pca_dir, {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv", **ONE_WORKER}),
                  Container("kmeans", kmeans_dir, ONE_WORKER)]
    with Pipeline(containers) as pipeline:
        answer = pipeline.invoke(_csv(rows), "text/csv", "application/jsonlines")
        assert (answer.status, answer.body) == (200, expected)
        assert pipeline.invoke(b"1,2\n", "text/csv", "application/json").status == 400
        assert b"from container-1 with message" in pipeline.invoke(b"1,2\n", "text/csv").body

        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "rows.csv").write_bytes(_csv(rows))
        job = TransformJob(content_type="text/csv", split_type="Line", accept="application/jsonlines",
                           assemble_with="Line", batch_strategy="SingleRecord")
        result = run_job(pipeline, job, input_files(tmp_path / "in", tmp_path / "out"), tmp_path / "out")
    assert result.mini_batches == 200
    assert (tmp_path / "out" / "rows.csv.out").read_bytes() == expected


def test_settings_the_agent_refuses() -> None:
    TransformJob(content_type="application/json", join_source="Input").check()  # a whole JSON file is one record
    with pytest.raises(TransformError, match="use SplitType=Line"):
        TransformJob(content_type="text/csv", join_source="Input").check()
    with pytest.raises(TransformError, match="CSV, JSON and JSON Lines only"):
        TransformJob(content_type=ct.RECORDIO, split_type="RecordIO", input_filter="$[1:]").check()
    with pytest.raises(TransformError, match="SplitType 'TFRecord' is not one of"):
        TransformJob(split_type="TFRecord").check()


def test_container_environment() -> None:
    assert TransformJob().container_environment() == {"SAGEMAKER_BATCH": "true"}  # unset fields are not passed
    assert TransformJob(batch_strategy="SingleRecord", max_payload_mb=20, max_concurrent=4,
                        environment={"A": "1"}).container_environment() == {
        "A": "1", "SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4"}
