"""XGBoost `_kfold` cross-validation pieces (docs/images/xgboost.md): settings, folds, predictions.csv, CV lines,
fold-model ensembles."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import xgboost as xgb

from algorithms.xgboost import data as data_module
from algorithms.xgboost import kfold
from algorithms.xgboost.algorithm import XGBoost
from common.errors import UserError
from common.serving.app import invoke


@pytest.mark.parametrize(("raw", "message"), [
    ({"_kfold": "1"}, "Hyperparameter '_kfold' has invalid value '1': must be an integer in the range [2, inf). "
                      "(_kfold is the number of cross-validation folds, _num_cv_round how many times the k-fold "
                      "split is repeated.)"),
    ({"_kfold": "five", "_num_cv_round": "0"},
     "Hyperparameter '_kfold' has invalid value 'five': must be an integer in the range [2, inf). Hyperparameter "
     "'_num_cv_round' has invalid value '0': must be an integer in the range [1, inf)."),
])
def test_bad_settings_are_one_clear_message(raw: dict, message: str) -> None:
    with pytest.raises(UserError) as caught:
        kfold.settings(raw)
    assert caught.value.message.startswith(message)


def test_settings_default_to_one_repeat_and_are_off_without_kfold() -> None:
    assert kfold.settings({"_kfold": "5"}) == kfold.CrossValidation(5, 1)
    assert kfold.settings({"_kfold": '"3"', "_num_cv_round": "2"}).models == 6  # SDK-quoted values too
    assert kfold.settings({"num_round": "3", "_num_cv_round": "2"}) is None


def test_every_row_is_held_out_once_per_repeat_and_the_split_is_seeded() -> None:
    labels = np.arange(103, dtype=np.float32)
    folds = kfold.split(labels, kfold.CrossValidation(4, 3), stratified=False, seed=7)
    assert len(folds) == 12
    for repeat in range(3):
        held = [folds[repeat * 4 + f][1] for f in range(4)]
        assert sorted(np.concatenate(held).tolist()) == list(range(103))
        assert {len(h) for h in held} <= {25, 26}
        for train_rows, held_out in folds[repeat * 4:(repeat + 1) * 4]:
            assert sorted(np.concatenate([train_rows, held_out]).tolist()) == list(range(103))
    assert not np.array_equal(folds[0][1], folds[4][1])  # each repeat shuffles anew
    again = kfold.split(labels, kfold.CrossValidation(4, 3), stratified=False, seed=7)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_stratified_folds_keep_the_class_ratios() -> None:
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat([0.0, 1.0, 2.0], [700, 200, 100]))
    for _, held_out in kfold.split(labels, kfold.CrossValidation(5, 2), stratified=True, seed=0):
        assert np.bincount(labels[held_out].astype(int)).tolist() == [140, 40, 20]
    uneven = np.repeat([0.0, 1.0], [23, 7])
    counts = [np.bincount(uneven[h].astype(int), minlength=2) for _, h in
              kfold.split(uneven, kfold.CrossValidation(3, 1), stratified=True, seed=1)]
    assert all(abs(c[0] - 23 / 3) < 1 and abs(c[1] - 7 / 3) < 1 for c in counts)
    assert sorted(int(c.sum()) for c in counts) == [10, 10, 10]


def test_predictions_table_as_upstream() -> None:
    binary = kfold.OutOfFold(np.array([1, 0, 1, 0]), 3, classification=True)
    for repeat, probs in enumerate(([0.6, 0, 0.6, 0.6], [0.7, 0, 0.7, 0.4], [0.8, 0, 0.8, 0.2])):
        binary.record(np.arange(4), repeat, np.array(probs))
    np.testing.assert_allclose(binary.table(), [[1, 0.7, 1], [0, 0, 0], [1, 0.7, 1], [0, 0.4, 0]])
    multi = kfold.OutOfFold(np.array([1, 2, 1, 0]), 1, classification=True)
    multi.record(np.array([0, 1]), 0, np.array([[0.1, 0.1, 0.8], [0.6, 0.3, 0.1]]))
    multi.record(np.array([2, 3]), 0, np.array([[0.3, 0.4, 0.3], [0.1, 0.1, 0.8]]))
    np.testing.assert_allclose(multi.table(), [[1, 0.8, 2], [2, 0.6, 0], [1, 0.4, 1], [0, 0.8, 2]])
    regression = kfold.OutOfFold(np.array([0.8, 0, 1, 0]), 2, classification=False)
    regression.record(np.arange(4), 0, np.array([0.6, 0, 0.6, 0.6]))
    regression.record(np.arange(4), 1, np.array([0.8, 0, 0.8, 0.2]))
    np.testing.assert_allclose(regression.table(), [[0.8, 0.7], [0, 0], [1, 0.7], [0, 0.4]])


def test_predictions_csv_is_percent_f_without_header(tmp_path: Path) -> None:
    recorder = kfold.OutOfFold(np.array([1.0, 0.0]), 1, classification=True)
    recorder.record(np.array([0, 1]), 0, np.array([0.75, 0.125]))
    path = recorder.save(tmp_path / "output" / "data")
    assert path.read_text() == "1.000000,0.750000,1.000000\n0.000000,0.125000,0.000000\n"


def test_cross_validation_line_is_per_metric_train_then_validation_means() -> None:
    folds = [kfold.scores("[0]\ttrain-poisson-nloglik:1.0\ttrain-error@0.7:0.25\tvalidation-poisson-nloglik:2.0\t"
                          "validation-error@0.7:0.5"),
             kfold.scores("[0]\ttrain-poisson-nloglik:3.0\ttrain-error@0.7:0.75\tvalidation-poisson-nloglik:4.0\t"
                          "validation-error@0.7:0.5")]
    line = kfold.summary_line(10, folds)
    assert line == ("[10]\ttrain-poisson-nloglik:2.00000\tvalidation-poisson-nloglik:3.00000\ttrain-error@0.7:0.50000"
                    "\tvalidation-error@0.7:0.50000")
    assert re.match(r"\[10\]\t", line)


def test_softmax_and_logitraw_folds_report_probabilities() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 3))
    y = (x[:, 0] > 0).astype(float) + (x[:, 1] > 0)
    d = xgb.DMatrix(x, label=y)
    softmax = xgb.train({"objective": "multi:softmax", "num_class": 3}, d, 4)
    probs = kfold.fold_predictions(softmax, d, "multi:softmax")
    assert probs.shape == (120, 3) and np.allclose(probs.sum(axis=1), 1)
    assert np.array_equal(probs.argmax(axis=1), softmax.predict(d).astype(int))
    raw = xgb.train({"objective": "binary:logitraw"}, xgb.DMatrix(x, label=x[:, 0] > 0), 4)
    p = kfold.fold_predictions(raw, d, "binary:logitraw")
    assert ((p > 0) & (p < 1)).all() and np.array_equal(p > 0.5, raw.predict(d) > 0)


def test_train_and_validation_rows_combine() -> None:
    train = data_module.Data(np.ones((3, 2), np.float32), np.zeros(3, np.float32), np.full(3, 2.0, np.float32),
                             segments=[("train/a.csv", 1, 3)])
    validation = data_module.Data(np.zeros((2, 2), np.float32), np.ones(2, np.float32),
                                  segments=[("validation/b.csv", 1, 2)])
    both = data_module.combine(train, validation)
    assert both.labels.tolist() == [0, 0, 0, 1, 1] and both.weights.tolist() == [2, 2, 2, 1, 1]
    assert both.where(4) == "row 2 of validation/b.csv"
    with pytest.raises(UserError, match="validation channel has 3 feature columns but the train channel has 2"):
        data_module.combine(train, data_module.Data(np.zeros((1, 3), np.float32), np.ones(1, np.float32)))
    sparse = data_module.Data(sp.csr_matrix(np.eye(2, 4, dtype=np.float32)), np.ones(2, np.float32))
    assert data_module.combine(train, sparse).features.shape == (5, 4)  # libsvm rows may stop early


def test_fold_models_are_saved_numbered_and_served_as_their_mean(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    boosters = [xgb.train({"objective": "binary:logistic", "seed": i, "subsample": 0.5},
                          xgb.DMatrix(x, label=x[:, i] > 0), 3) for i in range(3)]
    XGBoost(boosters).save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xgboost-model-0", "xgboost-model-1", "xgboost-model-2"]
    served = XGBoost.load(tmp_path)
    body = invoke(served, b"0.5,-1,2,0\n-1,1,0,0\n", "text/csv", None)[0]
    expected = np.mean([b.predict(xgb.DMatrix(np.array([[0.5, -1, 2, 0], [-1, 1, 0, 0]]))) for b in boosters], axis=0)
    np.testing.assert_allclose([float(v) for v in body.split()], expected, rtol=1e-6)
