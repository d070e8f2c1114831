"""k-means: kernels, training against scikit-learn, artifact, BYOM model, predictions."""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import load_digits, make_blobs

from algorithms.kmeans import kernels
from algorithms.kmeans.algorithm import KMeans
from algorithms.kmeans.sample import SAMPLE_BYTES, SAMPLE_ROWS, RowSample, merge_hosts, sample_capacity
from common.data.batch import Batch
from common.data.recordio_writer import encode_dense
from common.errors import UserError
from common.paths import Paths
from common.serving.app import invoke
from common.serving.request import Options
from common.training import run_training
from tools.local import write_job

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ndarray"


def test_minibatch_update_follows_the_guide_example() -> None:
    # 100 points already in the cluster, 25 new ones with mean d: c = (1 - 25/125) c + 25/125 d.
    centers = np.array([[0.0, 0.0]])
    counts = np.array([100.0])
    new = np.full((25, 2), 5.0, dtype=np.float32)
    kernels.minibatch_update(new, np.zeros(25, np.int64), centers, counts, 1.0)
    np.testing.assert_allclose(centers, [[1.0, 1.0]])
    assert counts[0] == 125.0
    kernels.minibatch_update(new[:1], np.zeros(1, np.int64), centers, counts, 0.5)  # decay halves history
    assert counts[0] == pytest.approx(63.5)


def test_assign_ties_go_to_the_lowest_index_and_distances_are_exact() -> None:
    centers = np.array([[0, 0], [2, 0]], np.float32)
    labels, squared = kernels.assign(np.array([[1, 0], [1e4 + 1, 1]], np.float32), centers)
    assert labels.tolist() == [0, 1]
    assert squared[0] == 1.0


def _train(base: Path, x: np.ndarray, hyperparameters: dict[str, str], test: np.ndarray | None = None,
           capsys: pytest.CaptureFixture | None = None) -> tuple[int, str]:
    data = base.parent / "train.rec"
    data.write_bytes(encode_dense(x.astype(np.float32)))
    channels = {"train": ([data], None)}
    if test is not None:
        test_file = base.parent / "test.csv"
        np.savetxt(test_file, test, delimiter=",")
        channels["test"] = ([test_file], "text/csv")
    write_job(base, hyperparameters, channels)
    code = run_training(KMeans, Paths(base))
    return code, capsys.readouterr().out if capsys else ""


def test_training_matches_scikit_learn_on_blobs(base_dir: Path, capsys: pytest.CaptureFixture) -> None:
    x, _ = make_blobs(n_samples=3000, centers=8, n_features=5, random_state=3)
    code, out = _train(base_dir, x, {"k": "8", "feature_dim": "5", "mini_batch_size": "500", "epochs": "2",
                                     "eval_metrics": '["msd", "ssd"]', "force_dense": "True"}, test=x, capsys=capsys)
    assert code == 0, (base_dir / "output" / "failure").read_text()
    model = KMeans.load(base_dir / "model")
    ours = SkKMeans(8, init=model.centers.astype(np.float64), n_init=1, max_iter=1).fit(x).inertia_
    best = SkKMeans(8, n_init=3, random_state=0).fit(x).inertia_
    assert ours <= 1.01 * best
    ssd = float(re.search(r"test ssd <loss>=(\S+)", out).group(1))
    msd = float(re.search(r"test msd <loss>=(\S+)", out).group(1))
    assert ssd == pytest.approx(ours, rel=1e-3) and msd == pytest.approx(ssd / len(x))
    metric_lines = [line for line in out.splitlines() if "#quality_metric" in line]
    assert "test ssd" in metric_lines[-1] and "train msd" in metric_lines[0]
    assert "#progress_metric: host=algo-1, completed 100.0 % of epochs" in out


@pytest.mark.parametrize("extra", [{}, {"init_method": "kmeans++", "epochs": "5"}])
def test_digits_within_one_percent_of_scikit_learn(base_dir: Path, extra: dict[str, str]) -> None:
    x = load_digits().data
    code, _ = _train(base_dir, x, {"k": "10", "feature_dim": "64", **extra})
    assert code == 0
    centers = KMeans.load(base_dir / "model").centers.astype(np.float64)
    ours = ((x[:, None, :] - centers[None]) ** 2).sum(-1).min(1).sum()
    best = SkKMeans(10, n_init=3, random_state=0).fit(x).inertia_
    assert ours <= 1.01 * best, (ours, best)


def _digits_inertia(centers: np.ndarray, x: np.ndarray) -> float:
    centers = centers.astype(np.float64)
    return float(((x[:, None, :] - centers[None]) ** 2).sum(-1).min(1).sum())


@pytest.mark.parametrize("order", [0, 4, 7])
def test_digits_in_any_row_order_within_one_percent_at_one_epoch(base_dir: Path, order: int) -> None:
    # Before the sample refinement and the greedy k-means++ reduction these orders gave 1.013 to 1.020 x.
    digits = load_digits().data
    x = digits[np.random.default_rng(order).permutation(len(digits))]
    code, _ = _train(base_dir, x, {"k": "10", "feature_dim": "64", "init_method": "kmeans++"})
    assert code == 0
    ours = _digits_inertia(KMeans.load(base_dir / "model").centers, x)
    best = SkKMeans(10, n_init=3, random_state=0).fit(digits).inertia_
    assert ours <= 1.01 * best, (ours, best)


def test_more_epochs_never_give_a_worse_model(base_dir: Path) -> None:
    x = load_digits().data
    x = x[np.random.default_rng(3).permutation(len(x))]  # before: 1.003, 1.003, 1.025, 1.032
    inertias = []
    for epochs in (1, 2, 3, 6):
        shutil.rmtree(base_dir)
        base_dir.mkdir()
        code, _ = _train(base_dir, x, {"k": "10", "feature_dim": "64", "init_method": "kmeans++",
                                       "epochs": str(epochs)})
        assert code == 0
        inertias.append(_digits_inertia(KMeans.load(base_dir / "model").centers, x))
    assert all(later <= earlier * (1 + 1e-9) for earlier, later in zip(inertias, inertias[1:])), inertias


def test_row_sample_is_uniform_and_stays_within_its_bound() -> None:
    capacity, batch = 1000, 997
    sample = RowSample(capacity, 1, np.random.default_rng(0))
    for start in range(0, 50 * batch, batch):
        sample.offer(np.arange(start, start + batch, dtype=np.float32)[:, None])
        assert sample.held_rows() <= capacity * 1.25 + batch
    rows, keys = sample.finish()
    ids = rows[:, 0]
    assert len(ids) == capacity and len(np.unique(ids)) == capacity and np.all(np.diff(keys) >= 0)
    n = 50 * batch
    assert abs(ids.mean() - n / 2) < 4 * n / np.sqrt(12 * capacity)  # a uniform draw's mean, within 4 sigma
    assert sample_capacity(10) == SAMPLE_ROWS and sample_capacity(784) * 784 * 4 <= SAMPLE_BYTES


def test_training_keeps_at_most_the_sample_capacity(base_dir: Path) -> None:
    x = np.random.default_rng(0).standard_normal((SAMPLE_ROWS + 7000, 2))
    code, _ = _train(base_dir, x, {"k": "3", "feature_dim": "2", "mini_batch_size": "4000"})
    assert code == 0
    with np.load(sorted((base_dir / "checkpoints").glob("*.npz"))[-1]) as saved:
        assert saved["sample"].shape == (SAMPLE_ROWS, 2)


def test_no_sample_with_half_life_decay(base_dir: Path) -> None:
    x, _ = make_blobs(n_samples=400, centers=3, n_features=2, random_state=0)
    code, _ = _train(base_dir, x, {"k": "3", "feature_dim": "2", "half_life_time_size": "100"})
    assert code == 0
    with np.load(sorted((base_dir / "checkpoints").glob("*.npz"))[-1]) as saved:
        assert "sample" not in saved.files and "best_centers" not in saved.files


class _ThreadCollective:
    """Ranks as threads of one process: allgather meets at a barrier."""

    def __init__(self, rank: int, world_size: int, board: dict, barrier: threading.Barrier) -> None:
        self.rank, self.world_size, self.board, self.barrier = rank, world_size, board, barrier

    def allgather(self, obj: object) -> list:
        self.board[self.rank] = obj
        self.barrier.wait()
        items = [self.board[r] for r in range(self.world_size)]
        self.barrier.wait()
        return items

    def gather(self, obj: object, root: int = 0) -> list | None:
        items = self.allgather(obj)
        return items if self.rank == root else None


def test_host_samples_merge_into_the_lowest_keys_of_all_rows() -> None:
    capacity, shards = 300, [np.arange(0, 700), np.arange(700, 1000)]
    samples = []
    for rank, shard in enumerate(shards):
        sample = RowSample(capacity, 1, np.random.default_rng([0, rank]))
        for part in np.array_split(shard.astype(np.float32)[:, None], 5):
            sample.offer(part)
        samples.append(sample.finish())
    board, barrier, merged = {}, threading.Barrier(2), {}

    def host(rank: int) -> None:
        collective = _ThreadCollective(rank, 2, board, barrier)
        merged[rank] = merge_hosts(collective, *samples[rank], capacity)

    threads = [threading.Thread(target=host, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert merged[1] is None
    every_key = np.concatenate([keys for _, keys in samples])
    every_row = np.concatenate([rows for rows, _ in samples])
    np.testing.assert_array_equal(merged[0], every_row[np.argsort(every_key)[:capacity]])
    from_first = int((merged[0][:, 0] < 700).sum())
    assert 0.6 * capacity < from_first < 0.8 * capacity  # hosts share the sample by their rows (70 %)


def test_kernels_refuse_labels_outside_the_centres() -> None:
    x = np.ones((3, 2), np.float32)
    bad = np.array([0, 2, 1])
    with pytest.raises(IndexError):
        kernels.cluster_sums(x, bad, np.ones(3), 2)
    with pytest.raises(IndexError):
        kernels.minibatch_update(x, bad, np.zeros((2, 2)), np.zeros(2), 1.0)
    with pytest.raises(ValueError):
        kernels.squared_distance_to(x, np.zeros((2, 3), np.float32), np.zeros(3, np.int64))


def test_no_reduction_when_factor_is_one_and_k_too_large(base_dir: Path) -> None:
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    code, _ = _train(base_dir, x, {"k": "3", "feature_dim": "2", "extra_center_factor": "1"})
    assert code == 0 and KMeans.load(base_dir / "model").centers.shape == (3, 2)
    shutil.rmtree(base_dir)
    base_dir.mkdir()
    code, _ = _train(base_dir, x, {"k": "11", "feature_dim": "2"})
    assert code == 1
    assert (base_dir / "output" / "failure").read_text() == \
        "ClientError: k=11 is larger than the number of training rows (10)."


def test_resume_from_checkpoint_skips_finished_epochs(base_dir: Path, capsys: pytest.CaptureFixture,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    x, _ = make_blobs(n_samples=400, centers=3, n_features=2, random_state=0)
    hyperparameters = {"k": "3", "feature_dim": "2", "epochs": "2", "mini_batch_size": "100"}
    assert _train(base_dir, x, hyperparameters, capsys=capsys)[0] == 0
    first = KMeans.load(base_dir / "model").centers
    checkpoints = sorted((base_dir / "checkpoints").glob("*.npz"))
    assert [p.name for p in checkpoints] == ["checkpoint-00000000.npz", "checkpoint-00000001.npz"]
    checkpoints[-1].unlink()  # as if the job stopped during epoch 1
    code, out = _train(base_dir, x, hyperparameters, capsys=capsys)
    assert code == 0 and "Resuming from the checkpoint after epoch 0." in caplog.text
    assert "completed 50.0 %" not in out and "completed 100.0 % of epochs" in out
    np.testing.assert_allclose(KMeans.load(base_dir / "model").centers, first, rtol=1e-5)


def test_spec_example_predictions() -> None:
    model = KMeans(np.array([[0, 0], [10, 10]], np.float32))
    columns = model.predict(Batch(np.array([[1, 1], [9, 10]], np.float32)), Options())
    assert columns["closest_cluster"].tolist() == [0.0, 1.0]
    assert columns["distance_to_cluster"].tolist() == [1.4142135381698608, 1.0]


def test_predict_errors() -> None:
    model = KMeans(np.zeros((2, 3), np.float32))
    with pytest.raises(UserError) as caught:
        model.predict(Batch(np.zeros((1, 2), np.float32)), Options())
    assert caught.value.message == "Row 1 of request has 2 features but the model's feature_dim is 3."
    with pytest.raises(UserError) as caught:
        invoke(model, b"0,0,0\n0,inf,0\n", "text/csv", None)
    assert caught.value.message == ("Row 2 of request, column 2 is inf (infinite, or beyond float32's range of about "
                                    "±3.4e38); values must be finite numbers.")


def test_artifact_round_trip_and_export(tmp_path: Path) -> None:
    centers = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    KMeans(centers).save(tmp_path)
    assert (tmp_path / "model_algo-1").read_bytes()[:8] == (0x112).to_bytes(8, "little")
    np.testing.assert_array_equal(KMeans.load(tmp_path).centers, centers)
    assert json.loads(json.dumps({k: v.tolist() for k, v in KMeans.load(tmp_path).export().items()}))


def test_bring_your_own_model_made_by_mxnet_serves_as_is(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "byom_kmeans.nd", tmp_path / "model_algo-1")
    model = KMeans.load(tmp_path)
    rng = np.random.default_rng(7)
    data = np.concatenate([rng.normal(loc, 0.3, size=(20, 4)) for loc in (0.0, 3.0, -3.0)])
    sklearn_labels = SkKMeans(n_clusters=3, n_init=10, random_state=0).fit(data).labels_
    columns = model.predict(Batch(data.astype(np.float32)), Options())
    assert columns["closest_cluster"].astype(int).tolist() == sklearn_labels.tolist()


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="model_algo-1 is missing from the model directory"):
        KMeans.load(tmp_path)
