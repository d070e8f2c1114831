"""inputdataconfig validation, File mode listing, gzip, Pipe mode FIFOs, exact batching."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from common.channels import ChannelSpec, DataChannel, parse_input_data_config
from common.data import content_types as ct
from common.errors import UserError

SPECS = (ChannelSpec("train", required=True, csv_label_size=None), ChannelSpec("test"))


def _channel(data: Path, name: str = "train", content_type: str = "text/csv", mode: str = "File") -> DataChannel:
    configs = parse_input_data_config({name: {"ContentType": content_type, "TrainingInputMode": mode}},
                                      SPECS, ct.RECORDIO)
    return DataChannel(configs[name], data)


def test_missing_content_type_takes_the_algorithm_default() -> None:
    configs = parse_input_data_config({"train": {"TrainingInputMode": "File"}}, SPECS, ct.RECORDIO)
    assert configs["train"].media.name == ct.RECORDIO
    assert configs["train"].distribution == "FullyReplicated"


def test_every_config_problem_at_once() -> None:
    with pytest.raises(UserError) as caught:
        parse_input_data_config({"tset": {}, "test": {"ContentType": "text/libsvm", "TrainingInputMode": "Pipe2",
                                                      "S3DistributionType": "Nope"}}, SPECS, ct.RECORDIO)
    assert caught.value.message == (
        "Channel 'tset' is not used by this algorithm; its channels are 'train', 'test'. "
        "Channel 'test' has ContentType 'text/libsvm'; supported: application/x-recordio-protobuf, text/csv. "
        "Channel 'test' has TrainingInputMode 'Pipe2'; supported: File, Pipe, FastFile. "
        "Channel 'test' has S3DistributionType 'Nope'; supported: FullyReplicated, ShardedByS3Key. "
        "Channel 'train' is required but inputdataconfig.json has no such channel.")


def test_file_mode_recursive_sorted_skips_hidden_and_reads_gzip(tmp_path: Path) -> None:
    root = tmp_path / "train"
    (root / "sub").mkdir(parents=True)
    (root / "b.csv").write_text("3,3\n")
    (root / "a.csv").write_text("1,1\n2,2\n")
    (root / "sub" / "c.csv.gz").write_bytes(gzip.compress(b"4,4\n"))
    (root / ".hidden").write_text("junk\n")
    (root / "_SUCCESS").write_text("")
    channel = _channel(tmp_path)
    assert [p.name for p in channel.files()] == ["a.csv", "b.csv", "c.csv.gz"]
    rows = np.concatenate([b.features for b in channel.batches(10, feature_dim=2)])
    np.testing.assert_array_equal(rows[:, 0], [1, 2, 3, 4])


def test_batches_have_exactly_batch_rows_across_files(tmp_path: Path) -> None:
    root = tmp_path / "train"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.csv").write_text("".join(f"{i},{j}\n" for j in range(5)))
    sizes = [len(b) for b in _channel(tmp_path).batches(4, feature_dim=2)]
    assert sizes == [4, 4, 4, 3]
    assert [len(b) for b in _channel(tmp_path).batches(4, feature_dim=2, exact=False)] == [4, 1, 4, 1, 4, 1]


def test_csv_label_inferred_from_feature_dim(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "d.csv").write_text("7,1,2\n8,3,4\n")
    batch = next(_channel(tmp_path).batches(10, feature_dim=2))
    np.testing.assert_array_equal(batch.features, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(batch.labels, [[7], [8]])
    explicit = next(_channel(tmp_path, content_type="text/csv;label_size=0").batches(10, feature_dim=3))
    assert explicit.width == 3


def test_width_and_nan_checks_name_the_row(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "d.csv").write_text("1,2,3,4\n")
    with pytest.raises(UserError) as caught:
        list(_channel(tmp_path).batches(10, feature_dim=2))
    assert caught.value.message == "Row 1 of train/d.csv has 4 features but feature_dim is 2."
    (tmp_path / "train" / "d.csv").write_text("1,2\n3,nan\n")
    with pytest.raises(UserError) as caught:
        list(_channel(tmp_path).batches(10, feature_dim=2))
    assert caught.value.message.startswith("Row 2 of train/d.csv, column 2 is empty or NaN")


def test_pipe_mode_reads_one_fifo_per_epoch(tmp_path: Path) -> None:
    def feed() -> None:
        for epoch in range(2):
            fifo = tmp_path / f"train_{epoch}"
            os.mkfifo(fifo)
            with open(fifo, "wb") as out:
                out.write(gzip.compress(f"{epoch},1\n{epoch},2\n".encode()) if epoch else b"0,1\n0,2\n")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    channel = _channel(tmp_path, mode="Pipe")
    for epoch in range(2):
        rows = np.concatenate([b.features for b in channel.batches(10, epoch=epoch, feature_dim=2)])
        np.testing.assert_array_equal(rows, [[epoch, 1], [epoch, 2]])
    writer.join(timeout=5)
