"""XGBoost `_kfold` jobs through `python -m common.entrypoint` (docs/images/xgboost.md), their ensemble served by
gunicorn, and what algorithm mode imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import xgboost as xgb
from sklearn.datasets import load_breast_cancer

from tests.integration.helpers import serving, train, train_hosts
from tools.local import entrypoint_env, write_job

X, Y = load_breast_cancer(return_X_y=True)
FIELD = re.compile(r"^-?\d+\.\d{6}$")
CV_LINE = re.compile(r"^\[5\]\ttrain-auc:(\d\.\d{5})\tvalidation-auc:(\d\.\d{5})$")


@pytest.fixture(scope="module")
def cancer_cv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """3-fold, 2 repeats, the HPO metric validation:auc; trained with -X importtime to see what it imports."""
    root = tmp_path_factory.mktemp("kfold")
    np.savetxt(root / "train.csv", np.c_[Y[:450], X[:450]], delimiter=",")
    np.savetxt(root / "validation.csv", np.c_[Y[450:], X[450:]], delimiter=",")
    base = root / "ml"
    write_job(base, {"num_round": "5", "objective": "binary:logistic", "max_depth": "3", "_kfold": "3",
                     "_num_cv_round": "2", "_tuning_objective_metric": "validation:auc"},
              {"train": ([root / "train.csv"], "text/csv"), "validation": ([root / "validation.csv"], "text/csv")})
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "common.entrypoint", "train"], text=True,
                            capture_output=True, env=entrypoint_env("xgboost", base), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"root": root, "base": base, "stdout": result.stdout, "stderr": result.stderr}


def test_one_model_per_fold_and_out_of_fold_predictions(cancer_cv: dict) -> None:
    base = cancer_cv["base"]
    assert sorted(p.name for p in (base / "model").iterdir()) == [f"xgboost-model-{i}" for i in range(6)]
    lines = (base / "output" / "data" / "predictions.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines]
    assert len(rows) == len(Y) and {len(r) for r in rows} == {3}
    assert all(FIELD.match(v) for r in rows for v in r)
    table = np.array(rows, float)
    np.testing.assert_array_equal(table[:, 0], Y)  # train rows, then validation rows
    assert ((table[:, 1] >= 0) & (table[:, 1] <= 1)).all() and set(table[:, 2]) == {0.0, 1.0}
    assert np.mean(table[:, 2] == Y) > 0.9


def test_per_fold_rounds_then_cross_validation_lines_hpo_reads(cancer_cv: dict) -> None:
    stdout = cancer_cv["stdout"]
    rounds = [line.split("\t")[0] for line in stdout.splitlines() if re.match(r"\[\d\]\t", line)]
    repeat = [f"[{i}]" for i in range(5)] * 3 + ["[5]"]  # 3 fold models' rounds, then their means
    assert rounds == repeat * 2 + ["[5]"]  # and the means over both repeats
    cv = [CV_LINE.match(line) for line in stdout.splitlines() if line.startswith("[5]")]
    assert all(cv), stdout
    first, second, overall = (float(m.group(2)) for m in cv)
    assert overall == pytest.approx((first + second) / 2, abs=1e-5) and overall > 0.9
    described = json.loads(subprocess.run([sys.executable, "-m", "common.entrypoint", "describe"], text=True,
                                          capture_output=True, env=entrypoint_env("xgboost", cancer_cv["base"])).stdout)
    regex = next(d["Regex"] for d in described["metric_definitions"] if d["Name"] == "validation:auc")
    last = [line for line in stdout.splitlines() if re.match(r"\[\d+\]", line)][-1]
    assert float(re.match(regex, last.replace("\t", "#011")).group(1)) == overall


def test_algorithm_mode_imports_neither_scikit_learn_nor_pandas(cancer_cv: dict) -> None:
    imported = {line.rsplit("|", 1)[1].strip() for line in cancer_cv["stderr"].splitlines() if "|" in line}
    assert "xgboost" in imported  # (a hidden package's refused import is listed alone, without its modules)
    assert not [name for name in imported if name.startswith(("sklearn.", "pandas."))]


def test_fold_models_serve_as_their_mean_and_an_empty_body_is_204(cancer_cv: dict) -> None:
    boosters = []
    for i in range(6):
        booster = xgb.Booster()
        booster.load_model(bytearray((cancer_cv["base"] / "model" / f"xgboost-model-{i}").read_bytes()))
        boosters.append(booster)
    expected = np.mean([b.predict(xgb.DMatrix(X[:4])) for b in boosters], axis=0)
    rows = "\n".join(",".join(repr(float(v)) for v in r) for r in X[:4])
    with serving("xgboost", cancer_cv["base"]) as (url, _):
        answer = requests.post(url + "/invocations", data=rows, headers={"Content-Type": "text/csv"})
        empty = requests.post(url + "/invocations", data=b"", headers={"Content-Type": "text/csv"})
    np.testing.assert_allclose([float(v) for v in answer.text.split()], expected, rtol=1e-6)
    assert (empty.status_code, empty.content) == (204, b"")


def test_regression_without_validation_and_bad_values(tmp_path: Path) -> None:
    np.savetxt(tmp_path / "train.csv", np.c_[X[:100, 0], X[:100, 1:]], delimiter=",")
    base = tmp_path / "ml"
    write_job(base, {"num_round": "3", "_kfold": "4"}, {"train": ([tmp_path / "train.csv"], "text/csv")})
    result = train("xgboost", base)
    assert result.returncode == 0, result.stdout + result.stderr
    table = np.loadtxt(base / "output" / "data" / "predictions.csv", delimiter=",")
    assert table.shape == (100, 2)
    np.testing.assert_allclose(table[:, 0], X[:100, 0], atol=5e-7)
    assert len(list((base / "model").iterdir())) == 4
    write_job(base, {"num_round": "3", "_kfold": "1"}, {"train": ([tmp_path / "train.csv"], "text/csv")})
    result = train("xgboost", base)
    assert result.returncode == 1
    assert (base / "output" / "failure").read_text().startswith(
        "ClientError: Hyperparameter '_kfold' has invalid value '1': must be an integer in the range [2, inf).")


def test_two_hosts_train_the_folds_together(cancer_cv: dict, tmp_path: Path) -> None:
    root, hosts = cancer_cv["root"], ["algo-1", "algo-2"]
    for host, name in zip(hosts, ("train.csv", "validation.csv")):  # one file each: 450 and 119 rows
        write_job(tmp_path / host, {"num_round": "3", "objective": "binary:logistic", "_kfold": "2"},
                  {"train": ([root / name], "text/csv")}, host=host, hosts=hosts, distribution="ShardedByS3Key")
    results = train_hosts("xgboost", [tmp_path / host for host in hosts], hosts, {"OMP_NUM_THREADS": "1"})
    outputs = [r.stdout for r in results]
    assert [r.returncode for r in results] == [0, 0], outputs
    assert sorted(p.name for p in (tmp_path / "algo-1" / "model").iterdir()) == ["xgboost-model-0", "xgboost-model-1"]
    assert not (tmp_path / "algo-2" / "model").exists() or not any((tmp_path / "algo-2" / "model").iterdir())
    for host, rows in zip(hosts, (450, 119)):  # every host writes its own rows' out-of-fold predictions
        assert len((tmp_path / host / "output" / "data" / "predictions.csv").read_text().splitlines()) == rows
    assert sum(line.startswith("[3]\t") for line in outputs[0].splitlines()) == 1
    assert not any(re.match(r"\[\d+\]\t", line) for line in outputs[1].splitlines())
