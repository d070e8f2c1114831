"""k-NN: schema rules, sampling, reduction, exact agreement with brute force, votes, artifact, training runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_blobs
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from algorithms.knn import vote
from algorithms.knn.algorithm import Knn
from algorithms.knn.hyperparameters import KnnHyperparameters
from algorithms.knn.reduction import Reduction, Transform
from algorithms.knn.sampling import Reservoir, host_share
from algorithms.knn.training import sample_host
from common.channels import DataChannel, parse_input_data_config
from common.data import content_types as ct
from common.data.batch import Batch
from common.data.content_types import MediaType
from common.data.recordio_writer import encode_dense, encode_sparse
from common.errors import UserError
from common.hyperparameters import parse_hyperparameters
from common.paths import Paths
from common.serving.app import invoke
from common.serving.request import Options
from common.training import run_training
from tools.local import write_job

JSON, VERBOSE = Options(), Options(verbose=True)


def _hp(**values: object) -> KnnHyperparameters:
    base = {"feature_dim": "2", "k": "3", "predictor_type": "classifier", "sample_size": "1000"}
    return parse_hyperparameters(KnnHyperparameters, {**base, **{k: str(v) for k, v in values.items()}})


def _fit(x: np.ndarray, y: np.ndarray, **values: object) -> Knn:
    hp = _hp(**{"feature_dim": x.shape[1], "sample_size": max(len(x), 1), **values})
    return Knn.fit(x.astype(np.float32), y.astype(np.float32), np.arange(len(x)), hp)


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, exact)]))


def test_covtype_notebook_wire_map_and_cross_field_rules() -> None:
    hp = parse_hyperparameters(KnnHyperparameters, {
        "feature_dim": "54", "k": "10", "sample_size": "200000", "predictor_type": "classifier",
        "index_type": "faiss.IVFPQ", "index_metric": "L2", "faiss_index_ivf_nlists": "500", "faiss_index_pq_m": "8",
        "_tuning_objective_metric": "test:accuracy", "_kvstore": "auto"})
    assert (hp.faiss_index_ivf_nlists, hp.faiss_index_pq_m, hp.mini_batch_size) == (500, 8, 5000)
    with pytest.raises(UserError) as caught:
        _hp(index_type="faiss.IVFPQ", index_metric="COSINE", dimension_reduction_type="sign", k=2000)
    assert caught.value.message == (
        "Hyperparameter 'dimension_reduction_target' is required when 'dimension_reduction_type' is set. "
        "Hyperparameter 'index_metric' has value 'COSINE', which index_type 'faiss.IVFPQ' does not support; use "
        "'L2', or index_type 'faiss.Flat' or 'faiss.IVFFlat'. "
        "Hyperparameter 'k' has invalid value '2000': must be at most sample_size (1000).")
    with pytest.raises(UserError, match=r"'dimension_reduction_target' has invalid value '2': must be less than "
                                        r"feature_dim \(2\)\."):
        _hp(dimension_reduction_type="fjlt", dimension_reduction_target=2)
    with pytest.raises(UserError) as caught:
        _hp(faiss_index_pq_m="5")
    assert caught.value.message == ("Hyperparameter 'faiss_index_pq_m' has invalid value '5': must be one of "
                                    "1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96.")


def test_reservoir_is_independent_of_batching_and_keeps_small_inputs_in_order() -> None:
    def run(batch_rows: int, capacity: int, rows: int = 1000) -> np.ndarray:
        reservoir = Reservoir(capacity, seed=5)
        x = np.arange(rows, dtype=np.float32)[:, None]
        for start in range(0, rows, batch_rows):
            part = slice(start, start + batch_rows)
            reservoir.add(Batch(x[part]), x[part, 0], np.arange(rows)[part])
        return reservoir.result(1)[2]

    assert run(1, 50).tolist() == run(7, 50).tolist() == run(1000, 50).tolist()
    assert len(set(run(7, 50).tolist())) == 50
    assert run(64, 2000).tolist() == list(range(1000))
    assert [host_share(100, rank, 3) for rank in range(3)] == [34, 33, 33]


def test_reservoir_sample_is_uniform() -> None:
    counts = np.zeros(100)
    for seed in range(400):
        reservoir = Reservoir(10, seed)
        ids = np.arange(100)
        for start in range(0, 100, 13):
            part = ids[start:start + 13]
            reservoir.add(Batch(part[:, None].astype(np.float32)), part.astype(np.float32), part)
        counts[reservoir.result(1)[2]] += 1
    assert counts.sum() == 4000 and abs(counts[:50].mean() - counts[50:].mean()) < 4
    assert counts.min() > 20 and counts.max() < 65  # expectation 40


@pytest.mark.parametrize("metric", ["L2", "INNER_PRODUCT", "COSINE"])
def test_flat_agrees_exactly_with_brute_force(metric: str) -> None:
    rng = np.random.default_rng(1)
    x, queries = rng.standard_normal((500, 8)), rng.standard_normal((40, 8))
    model = _fit(x, np.zeros(500), k=7, index_metric=metric)
    distances, ids = model.neighbors(queries.astype(np.float32))
    if metric == "L2":
        exact = ((queries[:, None] - x[None]) ** 2).sum(-1)
        order = np.argsort(exact, axis=1)[:, :7]
    else:
        a, b = (x, queries) if metric == "INNER_PRODUCT" else (
            x / np.linalg.norm(x, axis=1, keepdims=True), queries / np.linalg.norm(queries, axis=1, keepdims=True))
        exact = b @ a.T
        order = np.argsort(-exact, axis=1)[:, :7]
    assert ids.tolist() == order.tolist()
    np.testing.assert_allclose(distances, np.take_along_axis(exact, order, 1), rtol=1e-4, atol=1e-4)


def test_spec_vector_classifier_regressor_and_tie_rule() -> None:
    x = np.array([[0, 0], [1, 0], [0, 2], [5, 5]], np.float32)
    y = np.array([0, 1, 0, 2], np.float32)
    query = Batch(np.array([[0.2, 0.0]], np.float32))
    columns = _fit(x, y).predict(query, VERBOSE)
    assert list(columns) == ["predicted_label", "distances", "labels"]
    assert columns["predicted_label"].tolist() == [0.0] and columns["labels"].tolist() == [[0.0, 1.0, 0.0]]
    np.testing.assert_allclose(columns["distances"], [[0.04, 0.64, 4.04]], rtol=1e-5)
    assert _fit(x, y, predictor_type="regressor").predict(query, JSON)["predicted_label"].tolist() == [1 / 3]
    assert list(_fit(x, y).predict(query, JSON)) == ["predicted_label"]
    # Two labels twice each: the one met first in nearest-first order wins.
    assert vote.majority_vote(np.array([[1.0, 2.0, 2.0, 1.0], [2.0, 1.0, 1.0, 2.0], [7, 8, 9, 8]])).tolist() == \
        [1.0, 2.0, 8.0]
    tie = _fit(np.array([[0], [1], [2], [3]]), np.array([5, 4, 4, 5]), k=4).predict(Batch(np.zeros((1, 1))), JSON)
    assert tie["predicted_label"].tolist() == [5.0]


def test_labels_are_answered_as_written_and_neighbor_ids_opt_in() -> None:
    x = np.arange(6, dtype=np.float32)[:, None]
    model = _fit(x, np.array([0.1, 0.1, 0.7, 2.5, 2.5, 2.5]), k=2)
    columns = model.predict(Batch(np.array([[0.2], [4.6]], np.float32)),
                            Options.of(MediaType.parse("application/json;Verbose=True; neighbor_ids=true")))
    assert columns["predicted_label"].tolist() == [0.1, 2.5]
    assert columns["neighbor_ids"].tolist() == [[0.0, 1.0], [5.0, 4.0]]


def test_classifier_matches_scikit_learn_brute_force() -> None:
    x, y = load_digits(return_X_y=True)
    model = _fit(x[:1500], y[:1500], k=5)
    ours, labels, distances, _ = model.predict_labels(x[1500:].astype(np.float32))
    sklearn = KNeighborsClassifier(5, algorithm="brute").fit(x[:1500], y[:1500])
    sk_distances, _ = sklearn.kneighbors(x[1500:])
    np.testing.assert_allclose(distances, sk_distances ** 2, rtol=1e-5)
    counts = np.array([[np.count_nonzero(row == v) for v in row] for row in labels])
    tied = (counts == counts.max(1, keepdims=True)).sum(1) > counts.max(1)
    assert (ours == sklearn.predict(x[1500:]))[~tied].all() and 0 < tied.sum() < 20
    # scikit-learn breaks vote ties by the smallest label, we by the nearest; without ties: same accuracy.
    x, y = load_breast_cancer(return_X_y=True)
    ours = _fit(x[:450], y[:450], k=5).predict(Batch(x[450:].astype(np.float32)), JSON)["predicted_label"]
    expected = KNeighborsClassifier(5, algorithm="brute").fit(x[:450], y[:450]).predict(x[450:])
    assert ours.tolist() == expected.astype(float).tolist()


def test_regressor_matches_scikit_learn_brute_force_on_diabetes() -> None:
    x, y = load_diabetes(return_X_y=True)
    model = _fit(x[:400], y[:400], k=9, predictor_type="regressor")
    ours = model.predict(Batch(x[400:].astype(np.float32)), JSON)["predicted_label"]
    expected = KNeighborsRegressor(9, algorithm="brute").fit(x[:400], y[:400]).predict(x[400:])
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


@pytest.mark.parametrize("kind", ["sign", "fjlt"])
def test_dimension_reduction_is_seeded_recorded_and_replayed(kind: str, tmp_path: Path) -> None:
    x, y = make_blobs(1500, n_features=40, centers=5, random_state=2)
    model = _fit(x, y, k=5, dimension_reduction_type=kind, dimension_reduction_target=12)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model_algo-1.json").read_text())
    assert meta["dimension_reduction"] == {"type": kind, "seed": 3, "target_dim": 12, "input_dim": 40}
    queries = Batch(x[:100].astype(np.float32))
    before = model.predict(queries, VERBOSE)
    after = Knn.load(tmp_path).predict(queries, VERBOSE)
    np.testing.assert_array_equal(before["distances"], after["distances"])
    assert np.mean(after["predicted_label"] == y[:100]) > 0.95
    projected = Transform(40, Reduction(kind, 3, 12, 40))(x[:200])
    original = ((x[:100] - x[100:200]) ** 2).sum(1)
    ratio = ((projected[:100] - projected[100:]) ** 2).sum(1) / original
    assert 0.8 < np.median(ratio) < 1.2


def test_ivf_recall_floor_and_full_results_when_cells_run_short() -> None:
    x, y = make_blobs(5000, n_features=16, centers=30, random_state=4)
    queries = x[:200].astype(np.float32) + 0.1
    exact = _fit(x, y, k=10).neighbors(queries)[1]
    model = _fit(x, y, k=10, index_type="faiss.IVFFlat")
    assert model.meta.index["nlist"] == 71 and model.meta.nprobe == 8
    assert _recall(model.neighbors(queries)[1], exact) >= 0.95
    cosine = _fit(x, y, k=10, index_type="faiss.IVFFlat", index_metric="COSINE")
    assert _recall(cosine.neighbors(queries)[1], _fit(x, y, k=10, index_metric="COSINE").neighbors(queries)[1]) >= 0.9
    crowded = _fit(x[:300], y[:300], k=60, index_type="faiss.IVFFlat", faiss_index_ivf_nlists=100)
    distances, ids = crowded.neighbors(queries)
    assert (ids >= 0).all() and np.isfinite(distances).all()


def test_ivfpq_recall_floor_and_padding_rule() -> None:
    x, y = make_blobs(3000, n_features=6, centers=20, random_state=5)
    queries = x[:200].astype(np.float32) + 0.05
    exact = _fit(x, y, k=10).neighbors(queries)[1]
    padded = _fit(x, y, k=10, index_type="faiss.IVFPQ", faiss_index_pq_m=4)
    assert (padded.meta.padded_dim, padded.index.d, padded.meta.index["factory"]) == (8, 8, "IVF55,PQ4x8np")
    assert _recall(padded.neighbors(queries)[1], exact) >= 0.6
    x20 = np.hstack([x, np.random.default_rng(0).standard_normal((3000, 14))])
    reduced = _fit(x20[:600], y[:600], k=10, index_type="faiss.IVFPQ", faiss_index_pq_m=4,
                   dimension_reduction_type="fjlt", dimension_reduction_target=5)
    assert reduced.meta.reduction.target_dim == 8 and reduced.index.d == 8 and reduced.meta.padded_dim is None
    default_m = _fit(x20[:300], y[:300], k=3, index_type="faiss.IVFPQ")
    assert default_m.meta.index["pq_m"] == 4 and default_m.meta.index["pq_bits"] == 8
    tiny = _fit(x[:40], y[:40], k=3, index_type="faiss.IVFPQ", faiss_index_pq_m=3)
    assert tiny.meta.index["pq_bits"] == 5


def test_metadata_edits_are_honoured_at_load(tmp_path: Path) -> None:
    x = np.arange(10, dtype=np.float32)[:, None]
    _fit(x, np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1]), k=1).save(tmp_path)
    meta_file = tmp_path / "model_algo-1.json"
    text = meta_file.read_text().replace('"k": 1', '"k": 5').replace('"classifier"', '"regressor"')
    meta_file.write_text(text.replace("false", "False").replace("null", "None"))  # the guide's literal layout
    loaded = Knn.load(tmp_path)
    assert isinstance(loaded.labels, np.memmap)  # shared between server workers, like the index's vectors
    columns = loaded.predict(Batch(np.zeros((1, 1), np.float32)), VERBOSE)
    assert columns["labels"].shape == (1, 5) and columns["predicted_label"].tolist() == [0.4]
    meta_file.write_text(json.dumps({**json.loads(text), "k": 50}))
    assert Knn.load(tmp_path).predict(Batch(np.zeros((1, 1), np.float32)), VERBOSE)["labels"].shape == (1, 10)
    meta_file.write_text(json.dumps({**json.loads(text), "k": 0}))
    with pytest.raises(UserError, match=r"^model_algo-1.json: 'k' must be a positive integer, got 0\.$"):
        Knn.load(tmp_path)
    (tmp_path / "model_algo-1.labels").write_bytes(b"\0" * 12)
    meta_file.write_text(text)
    with pytest.raises(UserError, match="model_algo-1.labels holds 12 bytes, but the index holds 10 vectors"):
        Knn.load(tmp_path)


def test_model_with_only_the_guides_metadata_keys_loads(tmp_path: Path) -> None:
    model = _fit(np.eye(4), np.arange(4), k=2)
    model.save(tmp_path)
    (tmp_path / "model_algo-1.ids").unlink()
    (tmp_path / "model_algo-1.json").write_text('{"k": 2, "predictor_type": "classifier", '
                                                '"dimension_reduction": null, "normalize": false, "version": "1.0"}')
    loaded = Knn.load(tmp_path)
    assert loaded.feature_dim == 4 and loaded.export()["vectors"].tolist() == np.eye(4).tolist()
    neighbors = loaded.predict(Batch(np.eye(4, dtype=np.float32)[:1]), Options(neighbor_ids=True))["neighbor_ids"]
    assert neighbors.tolist() == [[0.0, 1.0]]


def test_predict_errors() -> None:
    model = _fit(np.eye(3), np.arange(3), k=1)
    with pytest.raises(UserError) as caught:
        model.predict(Batch(np.zeros((1, 2), np.float32)), JSON)
    assert caught.value.message == "Row 1 of request has 2 features but the model's feature_dim is 3."
    with pytest.raises(UserError) as caught:
        invoke(model, b"0,0,0\n0,,0\n", "text/csv", None)
    assert caught.value.message.startswith("Row 2 of request, column 2 is empty or NaN")


def _train(base: Path, files: dict[str, tuple[bytes, str | None]], hyperparameters: dict[str, str],
           capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    channels = {}
    for name, (body, content_type) in files.items():
        path = base.parent / f"{name}.data"
        path.write_bytes(body)
        channels[name] = ([path], content_type)
    write_job(base, {"predictor_type": "classifier", "sample_size": "100000", **hyperparameters}, channels)
    code = run_training(Knn, Paths(base))
    failure = base / "output" / "failure"
    return code, capsys.readouterr().out, failure.read_text() if failure.exists() else ""


def test_replicated_hosts_draw_disjoint_rows_and_sparse_rows_are_densified(base_dir: Path) -> None:
    x = sp.random(100, 6, density=0.3, format="csr", random_state=0, dtype=np.float32)
    data = base_dir.parent / "train.rec"
    data.write_bytes(encode_sparse(x, np.arange(100, dtype=np.float32)))
    write_job(base_dir, {}, {"train": ([data], None)})
    channel = DataChannel(parse_input_data_config(json.loads((base_dir / "input/config/inputdataconfig.json")
                                                             .read_text()), Knn.channels, ct.RECORDIO)["train"],
                          base_dir / "input" / "data")
    hp = _hp(feature_dim=6, sample_size=1000, mini_batch_size=16)
    (features, labels, row_ids), rows = sample_host(channel, hp, rank=1, world_size=2)
    assert rows == 100 and row_ids.tolist() == list(range(1, 100, 2)) and labels.tolist() == row_ids.tolist()
    np.testing.assert_array_equal(features, x.toarray()[1::2])


def _csv(x: np.ndarray, y: np.ndarray) -> bytes:
    return "".join(",".join(map(repr, row)) + "\n" for row in np.hstack([y[:, None], x]).tolist()).encode()


def test_training_prints_both_metric_forms_objective_last(base_dir: Path, capsys: pytest.CaptureFixture) -> None:
    x, y = load_digits(return_X_y=True)
    code, out, failure = _train(base_dir, {"train": (encode_dense(x[:1500], y[:1500].astype(np.float64)), None),
                                           "test": (_csv(x[1500:], y[1500:]), "text/csv")},
                                {"k": "5", "feature_dim": "64"}, capsys)
    assert code == 0, failure
    lines = [line for line in out.splitlines() if "#test_score" in line or "#quality_metric" in line]
    predicted = Knn.load(base_dir / "model").predict(Batch(x[1500:].astype(np.float32)), JSON)["predicted_label"]
    expected = float(np.mean(predicted == y[1500:]))
    assert re.search(r"#test_score \(algo-1\) : \('accuracy', (\S+)\)$", lines[0]).group(1) == repr(expected)
    assert lines[1].endswith(f"#quality_metric: host=algo-1, test accuracy <score>={expected!r}")
    assert sorted(p.name for p in (base_dir / "model").iterdir()) == [
        "model_algo-1", "model_algo-1.ids", "model_algo-1.json", "model_algo-1.labels"]
    labels = np.fromfile(base_dir / "model" / "model_algo-1.labels", dtype="<f4")
    assert labels.tolist() == y[:1500].astype(np.float32).tolist()


def test_training_errors(base_dir: Path, capsys: pytest.CaptureFixture) -> None:
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    y = np.arange(10, dtype=np.float64)
    hp = {"k": "11", "feature_dim": "2"}
    assert _train(base_dir, {"train": (_csv(x, y), "text/csv")}, hp, capsys)[2] == \
        "ClientError: k=11 is larger than the number of training rows (10)."
    assert _train(base_dir, {"train": (encode_dense(x), None)}, {**hp, "k": "1"}, capsys)[2] == (
        'ClientError: Row 1 of train/train.data has no label; k-NN needs a label on every row (label_size=1 for '
        'CSV, label["values"] for recordIO-protobuf).')
    assert _train(base_dir, {"train": (_csv(x, y), "text/csv;label_size=0")}, {**hp, "k": "1"}, capsys)[2] == (
        "ClientError: Channel 'train' has ContentType 'text/csv;label_size=0', but k-NN needs exactly one label "
        "column per row: use label_size=1.")
    y[3] = np.nan
    assert _train(base_dir, {"train": (encode_dense(x, y), None)}, {**hp, "k": "1"}, capsys)[2] == \
        "ClientError: Row 4 of train/train.data has a NaN or infinite label."
    assert _train(base_dir, {"train": (b"", "text/csv")}, {**hp, "k": "1"}, capsys)[2] == \
        "ClientError: The train channel holds no data rows."
