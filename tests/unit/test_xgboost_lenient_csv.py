"""XGBoost reads CSV as AWS's image does (a header line skipped, text fields missing), each with a WARNING."""

from __future__ import annotations

import gzip
import io
import logging
from pathlib import Path

import numpy as np
import pytest

from algorithms.xgboost import lenient_csv
from algorithms.xgboost.algorithm import XGBoost
from common.errors import UserError
from common.paths import Paths
from common.training import run_training
from tools.local import write_job

TITANIC = b"""PassengerId,Survived,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked
1,0,3,"Braund, Mr. Owen Harris",male,22,1,0,A/5 21171,7.25,,S
2,1,1,"Cumings, Mrs. John Bradley (Florence Briggs Thayer)",female,38,1,0,PC 17599,71.2833,C85,C
3,1,3,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,7.925,,S
4,1,1,"Futrelle, Mrs. Jacques Heath (Lily May Peel)",female,35,1,0,113803,53.1,C123,S
5,0,3,"Allen, Mr. William Henry",male,,0,0,373450,8.05,,S
"""


def test_header_skipped_text_missing_quoted_commas_kept_in_one_field(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        batch = lenient_csv.read(io.BytesIO(TITANIC), "train/titanic.csv", 1)
    assert batch.labels[:, 0].tolist() == [1, 2, 3, 4, 5] and batch.width == 11
    assert batch.features[0, :2].tolist() == [0, 3] and np.isnan(batch.features[0, 2])  # the name
    assert np.isnan(batch.features[4, 4])  # an empty Age: missing, as in the strict reader
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings[0].startswith("train/titanic.csv: line 1 looks like a header ('PassengerId,Survived,")
    assert "train/titanic.csv: column 4 has 5 non-numeric values (e.g. 'Braund, Mr. Owen Harris'), read as " \
           "missing values." in warnings
    assert "train/titanic.csv: column 11 has 2 non-numeric values (e.g. 'C85'), read as missing values." in warnings
    assert len(warnings) == 6  # the header and one per text column (4, 5, 9, 11, 12)


@pytest.mark.parametrize("first, header", [("a,b,c", True), ("1,x,3", True), ("1,2,3", False), ("1,red,3", False)])
def test_header_rule(first: str, header: bool) -> None:
    body = f"{first}\n1,2,3\n0,4,5\n" if first != "1,red,3" else "1,red,3\n1,blue,3\n"
    batch = lenient_csv.read(io.BytesIO(body.encode()), "f.csv", 1)
    assert len(batch) == (2 if header else body.count("\n"))


def test_rows_of_different_widths_stay_an_error() -> None:
    with pytest.raises(UserError, match=r"^Line 3 of f.csv has 2 fields but earlier lines have 3"):
        lenient_csv.read(io.BytesIO(b'1,"a,b",2\n0,x,1\n1,2\n'), "f.csv", 1)


@pytest.mark.parametrize("name, content", [("titanic.csv", TITANIC), ("titanic.csv.gz", gzip.compress(TITANIC))])
def test_the_seed_flows_raw_titanic_csv_trains(tmp_path: Path, name: str, content: bytes) -> None:
    data = tmp_path / name
    data.write_bytes(content)
    base = tmp_path / "ml"
    write_job(base, {"max_depth": "5", "eta": "0.1", "subsample": "0.8", "colsample_bytree": "0.8",
                     "num_round": "5"}, {"train": ([data], "csv")})
    assert run_training(XGBoost, Paths(base)) == 0, (base / "output" / "failure").read_text()
    assert (base / "model" / "xgboost-model").is_file()
