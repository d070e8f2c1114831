"""RCF: reservoir uniformity, tree invariants, score properties, attribution, metrics rule, artifact."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from algorithms.rcf import ALGORITHM as RCF
from algorithms.rcf import kernels
from algorithms.rcf.evaluation import check_labels, three_sigma_metrics
from algorithms.rcf.forest import Forest, Trees
from algorithms.rcf.hyperparameters import RCFHyperparameters
from algorithms.rcf.sampling import Reservoir, sample_stream
from algorithms.rcf.shingle import main as shingle_main
from algorithms.rcf.shingle import shingle
from common.cluster.collective import Collective
from common.data.batch import Batch
from common.errors import UserError
from common.hyperparameters import parse_hyperparameters
from common.serving.app import invoke
from common.serving.request import Options

RNG = np.random.default_rng(3)
CLUSTER = RNG.standard_normal((3000, 2)).astype(np.float32)


def forest_of(x: np.ndarray, trees: int = 50, per_tree: int = 64, seed: int = 0) -> Forest:
    samples = sample_stream(iter([x]), trees, per_tree, x.shape[1], Collective(), seed)
    built = Trees.build(samples.per_tree, [seed * 1000 + t for t in range(trees)])
    return Forest(built, {"feature_dim": x.shape[1], "num_samples_per_tree": len(samples.per_tree[0])})


# ---- reservoir ------------------------------------------------------------------------------
def test_reservoir_keeps_every_row_with_the_same_probability() -> None:
    rows, capacity, trials = 60, 12, 3000
    stream = np.arange(rows, dtype=np.float32)[:, None]
    counts = np.zeros(rows)
    for seed in range(trials):
        reservoir = Reservoir(capacity, 1, seed)
        for part in np.array_split(stream, 7):  # batches of uneven sizes
            reservoir.add(part)
        kept = reservoir.sample()[:, 0].astype(int)
        assert len(np.unique(kept)) == capacity  # without replacement
        counts[kept] += 1
    expected = trials * capacity / rows
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 110  # 59 degrees of freedom: p ~ 1e-4
    assert reservoir.seen == rows


def test_small_data_rule_and_disjoint_samples() -> None:
    x = np.arange(4032, dtype=np.float32)[:, None]
    samples = sample_stream(iter(np.array_split(x, 5)), 50, 512, 1, Collective(), 0)
    assert [len(s) for s in samples.per_tree] == [80] * 50  # floor(4032 / 50), as the real log shows
    pooled = np.concatenate(samples.per_tree)[:, 0]
    assert len(np.unique(pooled)) == 4000 and samples.rows == 4032


def test_too_few_rows_for_the_trees() -> None:
    with pytest.raises(UserError) as caught:
        sample_stream(iter([np.ones((49, 2), np.float32)]), 50, 256, 2, Collective(), 0)
    assert caught.value.message == ("The train channel holds 49 rows, fewer than num_trees=50; "
                                    "every tree needs at least one row.")
    with pytest.raises(UserError, match="^The train channel holds no data rows.$"):
        sample_stream(iter([]), 50, 256, 2, Collective(), 0)


# ---- trees ----------------------------------------------------------------------------------
def test_tree_invariants() -> None:
    x = np.vstack([RNG.standard_normal((200, 3)), np.repeat([[9.0, 9.0, 9.0]], 5, axis=0)]).astype(np.float32)
    x[:, 2] = 4.0  # a constant feature
    forest = Forest(Trees.build([x], [7]), {"feature_dim": 3, "num_samples_per_tree": len(x)})
    t = forest.trees
    leaves = t.cut_dim < 0
    assert leaves.sum() == len(t.points) == 201  # 200 distinct + one leaf holding the 5 duplicates
    assert len(t.cut_dim) == 2 * leaves.sum() - 1 and t.mass[0] == len(x)
    inner = np.flatnonzero(~leaves)
    np.testing.assert_array_equal(t.mass[inner], t.mass[t.left[inner]] + t.mass[t.right[inner]])
    assert (t.left[inner] > inner).all() and (t.right[inner] > inner).all()
    assert not (t.cut_dim[inner] == 2).any()  # zero range is never cut
    dims = t.cut_dim[inner]
    assert (forest.box_min[inner, dims] <= t.cut_value[inner]).all()
    assert (t.cut_value[inner] < forest.box_max[inner, dims]).all()
    assert t.mass[leaves].max() == 5
    for row in x[::20]:  # every point descends to the leaf that holds it
        node = 0
        while t.cut_dim[node] >= 0:
            node = t.left[node] if row[t.cut_dim[node]] <= t.cut_value[node] else t.right[node]
        np.testing.assert_array_equal(t.points[t.leaf_point[node]], row)


def test_cut_dimension_is_chosen_in_proportion_to_its_range() -> None:
    x = np.column_stack([RNG.uniform(0, 1, 64), RNG.uniform(0, 3, 64)]).astype(np.float32)
    trees = Trees.build([x] * 2000, list(range(2000)))
    root_dims = trees.cut_dim[trees.roots]
    width = x.max(axis=0) - x.min(axis=0)
    assert abs(root_dims.mean() - width[1] / width.sum()) < 0.03


# ---- scores ---------------------------------------------------------------------------------
def test_outlier_scores_highest_on_the_aws_scale() -> None:
    forest = forest_of(CLUSTER)
    queries = np.vstack([CLUSTER[:500], [[7.0, -7.0]]]).astype(np.float32)
    scores = forest.score(queries)
    assert scores.argmax() == 500 and scores[500] > scores.mean() + 3 * scores.std()
    assert 0.6 < np.median(scores[:500]) < 1.2 and scores.max() < np.log2(64 + 1)
    np.testing.assert_array_equal(forest.score(queries), scores)  # deterministic


def test_duplicates_score_the_same_and_constant_features_change_nothing() -> None:
    queries = np.vstack([CLUSTER[:5], CLUSTER[:5], [[5.0, 5.0]]]).astype(np.float32)
    scores = forest_of(CLUSTER).score(queries)
    np.testing.assert_array_equal(scores[:5], scores[5:10])
    widened = np.column_stack([CLUSTER[:, :1], np.full(len(CLUSTER), 2.5), CLUSTER[:, 1:]]).astype(np.float32)
    wide_queries = np.column_stack([queries[:, :1], np.full(len(queries), 2.5), queries[:, 1:]]).astype(np.float32)
    np.testing.assert_allclose(forest_of(widened).score(wide_queries), scores, rtol=1e-12)


def test_all_identical_training_rows_still_score() -> None:
    forest = forest_of(np.ones((500, 2), np.float32), per_tree=8)
    same, other = forest.score(np.array([[1.0, 1.0], [2.0, 1.0]], np.float32))
    assert same == pytest.approx((1 - 8 / 16) / np.log2(9) * np.log2(9))  # the seen-leaf formula
    assert other == pytest.approx(np.log2(9))  # separated at the root


def test_attribution_sums_to_the_score_and_points_at_the_odd_feature() -> None:
    forest = forest_of(CLUSTER)
    queries = np.array([[0.1, 9.0], [-9.0, 0.0], CLUSTER[0]], np.float32)
    high, low = forest.attribution(queries)
    np.testing.assert_allclose((high + low).sum(axis=1), forest.score(queries), rtol=1e-9)
    assert high[0, 1] > 0.9 * (high[0] + low[0]).sum()
    assert low[1, 0] > 0.9 * (high[1] + low[1]).sum()


def test_predict_columns_and_verbose() -> None:
    model = RCF(forest_of(CLUSTER))
    batch = Batch(np.array([[0.0, 0.0], [6.0, 6.0]], np.float32))
    plain = model.predict(batch, Options())
    assert list(plain) == ["score"] and plain["score"].dtype == np.float64
    assert plain["score"][1] == round(plain["score"][1], 10)
    verbose = model.predict(batch, Options(verbose=True))
    assert list(verbose) == ["score", "attribution", "attribution_high", "attribution_low"]
    np.testing.assert_allclose(verbose["attribution"].sum(axis=1), verbose["score"], atol=1e-8)
    with pytest.raises(UserError, match="^Row 1 of request has 3 features but the model's feature_dim is 2.$"):
        model.predict(Batch(np.zeros((1, 3), np.float32)), Options())
    with pytest.raises(UserError, match="^Row 2 of request, column 1 is empty or NaN"):
        invoke(model, b"0,0\nnan,1\n", "text/csv", None)


# ---- artifact -------------------------------------------------------------------------------
def test_artifact_round_trip_without_pickle(tmp_path: Path) -> None:
    model = RCF(forest_of(CLUSTER))
    model.save(tmp_path)
    with np.load(tmp_path / "model_algo-1", allow_pickle=False) as archive:
        assert {"metadata.json", "cut_dim.npy", "points.npy"} <= set(zipfile.ZipFile(tmp_path / "model_algo-1")
                                                                     .namelist())
        assert archive["points"].dtype == np.float32
    loaded = RCF.load(tmp_path)
    np.testing.assert_array_equal(loaded.forest.score(CLUSTER[:50]), model.forest.score(CLUSTER[:50]))
    assert set(loaded.export()) == {"roots", "cut_dim", "cut_value", "left", "right", "mass", "leaf_point",
                                    "points"}


def test_damaged_artifacts_are_refused(tmp_path: Path) -> None:
    (tmp_path / "model_algo-1").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="is not a readable RCF model"):
        RCF.load(tmp_path)
    good = forest_of(CLUSTER)
    good.trees.left[0] = 0  # a node pointing at itself
    with pytest.raises(UserError, match="^The RCF model's tree arrays are inconsistent; the model file is damaged.$"):
        Forest(good.trees, good.metadata)
    with pytest.raises(UserError, match="is missing from the model directory"):
        RCF.load(tmp_path / "nowhere")


def test_checked_depth_matches_the_built_depths() -> None:
    forest = forest_of(CLUSTER, trees=50)
    built = Trees.build([CLUSTER[:64]], [1])
    t = forest.trees
    assert forest.max_depth == kernels.checked_depth(t.roots, t.cut_dim, t.left, t.right, t.leaf_point, len(t.points))
    assert kernels.checked_depth(built.roots, built.cut_dim, built.left, built.right, built.leaf_point,
                                 len(built.points)) == built.depths[0]


# ---- metrics rule ---------------------------------------------------------------------------
def test_three_sigma_metrics() -> None:
    scores = np.concatenate([np.ones(98), [10.0, 10.0]])  # mean 1.18, std 1.26: cutoff 4.96
    labels = np.zeros(100, bool)
    labels[[0, 98]] = True
    metrics = three_sigma_metrics(scores, labels, ("accuracy", "precision_recall_fscore"))
    assert list(metrics) == ["accuracy", "precision", "recall", "precision_negative", "recall_negative",
                             "f1_negative", "f1"]
    assert metrics["accuracy"] == 0.98 and metrics["precision"] == 0.5 and metrics["recall"] == 0.5
    assert metrics["f1"] == 0.5 and metrics["precision_negative"] == 97 / 98
    assert list(three_sigma_metrics(scores, labels, ("accuracy",))) == ["accuracy", "f1"]
    assert three_sigma_metrics(np.ones(10), np.ones(10, bool), ("accuracy",)) == {"accuracy": 0.0, "f1": 0.0}


def test_labels_must_be_zero_or_one() -> None:
    with pytest.raises(UserError) as caught:
        check_labels(np.array([[0.0], [2.0]], np.float32), "row 1 of test/t.csv")
    assert caught.value.message == "Test labels must be 1 (anomaly) or 0 (normal); row 1 of test/t.csv holds 2.0."
    with pytest.raises(UserError, match="needs one label per row"):
        check_labels(None, "row 1 of test/t.csv")


# ---- hyperparameters and shingling ------------------------------------------------------------
def test_sdk_wire_hyperparameters() -> None:
    # What sagemaker.RandomCutForest(num_samples_per_tree=512, num_trees=50, eval_metrics=[...]) sends.
    parsed = parse_hyperparameters(RCFHyperparameters, {
        "num_samples_per_tree": "512", "num_trees": "50", "eval_metrics": '["accuracy", "precision_recall_fscore"]',
        "feature_dim": "1", "mini_batch_size": "1000", "_tuning_objective_metric": "test:f1"})
    assert (parsed.num_trees, parsed.num_samples_per_tree, parsed.mini_batch_size) == (50, 512, 1000)
    assert parse_hyperparameters(RCFHyperparameters, {"feature_dim": "2", "eval_metrics": "accuracy"}).eval_metrics \
        == ("accuracy",)
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(RCFHyperparameters, {"feature_dim": "2", "num_trees": "10", "n_estimators": "5"})
    assert caught.value.message == ("Hyperparameter 'num_trees' has invalid value '10': must be an integer in the "
                                    "range [50, 1000]. Hyperparameter 'n_estimators' is not recognised; did you "
                                    "mean 'num_trees'?")


def test_shingle_keeps_the_last_window(tmp_path: Path) -> None:
    np.testing.assert_array_equal(shingle(np.arange(5), 3), [[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    two = shingle(np.arange(8).reshape(4, 2), 2)
    np.testing.assert_array_equal(two[0], [0, 1, 2, 3])
    with pytest.raises(UserError, match="between 1 and the series length 5"):
        shingle(np.arange(5), 6)
    source, target = tmp_path / "series.csv", tmp_path / "shingled.csv"
    source.write_text("time,value\n" + "".join(f"t{i},{i * 10}\n" for i in range(6)))
    assert shingle_main([str(source), str(target), "--size", "4", "--column", "1", "--skip-header"]) == 0
    assert target.read_text().splitlines() == ["0,10,20,30", "10,20,30,40", "20,30,40,50"]
