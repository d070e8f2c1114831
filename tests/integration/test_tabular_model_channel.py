"""Incremental training from the `model` channel (docs/images/lightgbm.md), through the entrypoint."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.integration.helpers import train
from tests.integration.test_tabular_entrypoint import CB_FAST, LGB_FAST, _job, _trained


def _tree_count(algorithm: str, model_dir: Path) -> int:
    if algorithm == "lightgbm":
        import lightgbm

        return lightgbm.Booster(model_file=str(model_dir / "model.txt")).num_trees()
    import catboost

    model = catboost.CatBoost()
    model.load_model(str(model_dir / "model"))
    return model.tree_count_


def _archive(model_dir: Path, target: Path, info: dict | None = None) -> Path:
    if info is not None:
        (model_dir / "__models_info__.json").write_text(json.dumps(info))
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target / "model.tar.gz", "w:gz") as archive:
        for path in model_dir.iterdir():
            archive.add(path, arcname=path.name)
    return target / "model.tar.gz"


def _continue(tmp: Path, algorithm: str, archive: Path, classes: int = 2) -> tuple[Path, object]:
    hp = LGB_FAST if algorithm == "lightgbm" else CB_FAST
    base = _job(tmp / "second", algorithm, hp, classes=classes)
    channel = base / "input" / "data" / "model"
    channel.mkdir(parents=True)
    (channel / archive.name).write_bytes(archive.read_bytes())
    config = base / "input" / "config" / "inputdataconfig.json"
    data_config = json.loads(config.read_text())
    data_config["model"] = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                            "ContentType": "application/x-tar"}
    config.write_text(json.dumps(data_config))
    return base, train(algorithm, base)


@pytest.mark.parametrize("algorithm", ["lightgbm", "catboost"])
def test_training_continues_from_a_marked_model(tmp_path: Path, algorithm: str) -> None:
    first, _ = _trained(tmp_path / "first", algorithm, LGB_FAST if algorithm == "lightgbm" else CB_FAST, classes=2)
    before = _tree_count(algorithm, first / "model")
    archive = _archive(first / "model", tmp_path / "archive")
    base, result = _continue(tmp_path, algorithm, archive)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Continuing training from the 'model' channel's model." in result.stdout + result.stderr
    assert _tree_count(algorithm, base / "model") > before
    assert json.loads((base / "model" / "__models_info__.json").read_text())["is_trained_on_input_data"] is True


def test_an_unmarked_model_means_training_from_scratch(tmp_path: Path) -> None:
    first, _ = _trained(tmp_path / "first", "lightgbm", LGB_FAST, classes=2)
    from_scratch = _tree_count("lightgbm", first / "model")  # the same data: the same trees
    archive = _archive(first / "model", tmp_path / "archive", {"is_trained_on_input_data": False})
    base, result = _continue(tmp_path, "lightgbm", archive)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not marked is_trained_on_input_data; training from scratch" in result.stdout + result.stderr
    assert _tree_count("lightgbm", base / "model") == from_scratch


def test_a_malformed_info_file_or_another_task_fails_the_job(tmp_path: Path) -> None:
    first, _ = _trained(tmp_path / "first", "lightgbm", LGB_FAST, classes=2)
    (first / "model" / "__models_info__.json").write_text("{not json")
    base, result = _continue(tmp_path / "a", "lightgbm", _archive(first / "model", tmp_path / "bad"))
    assert result.returncode == 1
    assert "__models_info__.json in the 'model' channel is not valid JSON" in (base / "output" / "failure").read_text()

    archive = _archive(first / "model", tmp_path / "other",
                       {"is_trained_on_input_data": True, "problem_type": "classification", "num_classes": 3})
    base, result = _continue(tmp_path / "b", "lightgbm", archive)
    assert result.returncode == 1
    assert "trained for classification with 3 classes, but this job's labels make it classification with 2" \
        in (base / "output" / "failure").read_text()
