"""The train command's failure contract, checkpoints and the entrypoint's algorithm lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from algorithms.kmeans.algorithm import KMeans
from common.algorithm import load_algorithm
from common.checkpoints import Checkpoints
from common.errors import UserError
from common.paths import Paths
from common.training import run_training
from tools.local import write_job


class Broken(KMeans):
    @classmethod
    def train(cls, job):  # type: ignore[override]
        raise RuntimeError("division by zero somewhere deep")


def test_our_bug_is_an_algorithm_error_with_exit_code_2(base_dir: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "d.csv"
    data.write_text("1,2\n")
    write_job(base_dir, {"k": "1", "feature_dim": "2"}, {"train": ([data], "text/csv")})
    assert run_training(Broken, Paths(base_dir)) == 2
    failure = (base_dir / "output" / "failure").read_text()
    assert failure == "AlgorithmError: RuntimeError: division by zero somewhere deep"
    assert "Traceback" in caplog.text  # the traceback goes to the log only


def test_config_problems_are_reported_together(base_dir: Path) -> None:
    write_job(base_dir, {"k": "x", "feature_dim": "2"}, {})
    assert run_training(KMeans, Paths(base_dir)) == 1
    assert (base_dir / "output" / "failure").read_text() == (
        "ClientError: Hyperparameter 'k' has invalid value 'x': must be an integer in the range [1, inf). "
        "Channel 'train' is required but inputdataconfig.json has no such channel.")


def test_invalid_config_json_is_a_client_error(base_dir: Path) -> None:
    write_job(base_dir, {}, {})
    (base_dir / "input" / "config" / "hyperparameters.json").write_text("{not json")
    assert run_training(KMeans, Paths(base_dir)) == 1
    assert (base_dir / "output" / "failure").read_text().startswith(
        "ClientError: hyperparameters.json is not valid JSON: Expecting property name")


def test_checkpoints_keep_the_newest_and_skip_a_damaged_one(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path / "ckpt", keep=2)
    assert checkpoints.latest() is None
    for step in range(3):
        checkpoints.save(step, {"w": np.full(3, step, np.float64)}, {"note": f"after {step}"})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["checkpoint-00000001.npz",
                                                                      "checkpoint-00000002.npz"]
    arrays, meta = checkpoints.latest()
    assert meta == {"step": 2, "note": "after 2"} and arrays["w"].tolist() == [2, 2, 2]
    (tmp_path / "ckpt" / "checkpoint-00000002.npz").write_bytes(b"truncated")
    assert checkpoints.latest()[1]["step"] == 1


def test_checkpoint_dir_comes_from_checkpointconfig(base_dir: Path, tmp_path: Path) -> None:
    paths = Paths(base_dir)
    assert paths.checkpoints == base_dir / "checkpoints"
    paths.config.mkdir(parents=True)
    paths.checkpoint_config.write_text(f'{{"LocalPath": "{tmp_path / "elsewhere"}"}}')
    assert paths.checkpoints == tmp_path / "elsewhere"


@pytest.mark.parametrize("name,message", [
    ("", "Set the ALGORITHM environment variable to an algorithm folder name, e.g. kmeans."),
    ("nope", "ALGORITHM='nope' names no folder under algorithms/."),
    ("../x", "ALGORITHM='../x' is not a valid algorithm folder name."),
])
def test_algorithm_lookup_errors(name: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        load_algorithm(name)
    assert caught.value.message == message
    assert load_algorithm("kmeans") is KMeans
