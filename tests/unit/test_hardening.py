"""Malformed input is the caller's error, named and located, never a crash: readers, config files, gzip,
non-finite values, and tar members (each case once broke a process or answered with our error)."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from algorithms.kmeans.algorithm import KMeans
from algorithms.lightgbm.algorithm import LightGBM
from algorithms.xgboost.algorithm import XGBoost
from common.channels import maybe_gunzip
from common.data.csv_reader import CsvReader
from common.data.json_reader import JsonReader
from common.data.libsvm_reader import LibsvmReader
from common.errors import UserError
from common.paths import Paths
from common.script_mode.code import _checked_members
from common.training import run_training
from tools.local import write_job


@pytest.mark.parametrize("rows", [1, 4, 10_000])
def test_csv_rows_of_empty_fields_are_all_read(rows: int) -> None:
    batch = CsvReader().parse(b",,,\n" * rows)
    assert batch.features.shape == (rows, 4) and np.isnan(batch.features).all()


def test_csv_empty_fields_in_a_separate_process_do_not_corrupt_memory() -> None:
    """The overflow once aborted the interpreter ("double free or corruption"): run it where that shows."""
    code = ("from common.data.csv_reader import CsvReader\n"
            "for n in (3, 2000, 100000):\n"
            "    assert CsvReader().parse(b',,,\\n' * n + b'1,2,3,4').features.shape == (n + 1, 4)\n"
            "    assert CsvReader().parse(b',\\n' * n).features.shape == (n, 2)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_csv_streaming_of_empty_fields_counts_every_row() -> None:
    body = b",,,\n" * 50_000
    batches = list(CsvReader(chunk_bytes=1 << 16).batches(io.BytesIO(body), "train/x.csv", 7_000))
    assert sum(len(b) for b in batches) == 50_000


@pytest.mark.parametrize("body, message", [
    (b"1 99999999999999999999:1\n", "feature index 99999999999999999999 is larger than the largest allowed"),
    (b"1 2147483647:1\n", "feature index 2147483647 is larger than the largest allowed, 2147483646."),
    (b"1 qid:nan 1:2\n", "qid 'nan' is not an integer"),
    (b"1 qid:1e300 1:2\n", "qid '1e300' is not an integer"),
])
def test_libsvm_indices_and_qids_out_of_range_are_named(body: bytes, message: str) -> None:
    with pytest.raises(UserError, match="^Line 1 of request: " + message.replace("(", r"\(")):
        LibsvmReader().parse(body)


@pytest.mark.parametrize("body, message", [
    (b"[" * 100_000, "nests JSON arrays or objects too deeply"),
    (b"[" + b"9" * 5000 + b"]", "holds an integer of more than 4300 digits"),
    (b'{"instances": [{"data": {"features": {"keys": [0], "shape": [99999999999999999999], "values": [1]}}}]}',
     "'shape' [99999999999999999999] gives 99999999999999999999 features; at most 2147483647"),
])
def test_json_that_python_cannot_hold_is_a_user_error(body: bytes, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        JsonReader().parse(body)


@pytest.mark.parametrize("body", [b"[1e400, 2]", b"[" + b"9" * 400 + b", 2]", b"[-" + b"9" * 400 + b", 2]"])
def test_json_numbers_beyond_float32_are_infinite_and_refused_naming_row_and_column(body: bytes) -> None:
    batch = JsonReader().parse(body)
    with pytest.raises(UserError, match=r"^Row 1 of request, column 1 is -?inf \(infinite, or beyond float32"):
        batch.check_finite(missing_ok=True)


def test_the_values_rule_missing_vs_infinite() -> None:
    batch = CsvReader(label_size=1).parse(b"1,2,3\n0,,4\n1,5,1e39\n", "train/a.csv")
    with pytest.raises(UserError, match="^Row 2 of train/a.csv, column 2 is empty or NaN"):
        batch.check_finite()
    with pytest.raises(UserError, match="^Row 3 of train/a.csv, column 3 is inf"):
        batch.check_finite(missing_ok=True)


def test_requests_follow_the_values_rule_per_algorithm() -> None:
    from common.serving.app import invoke

    class Model(XGBoost):
        def __init__(self) -> None:
            pass

    assert XGBoost.handles_missing_values and LightGBM.handles_missing_values
    assert not KMeans.handles_missing_values
    with pytest.raises(UserError, match="^Row 1 of request, column 2 is inf"):
        invoke(Model(), b"1,inf\n", "text/csv", None)


@pytest.mark.parametrize("mangle", [lambda z: z[: len(z) // 2], lambda z: z[:12] + b"\x00" * 40 + z[52:],
                                    lambda z: z[:2] + b"junk" * 10])
def test_corrupt_gzip_is_a_user_error_naming_the_file(mangle) -> None:
    body = mangle(gzip.compress(b"1,2\n3,4\n" * 2000))
    with pytest.raises(UserError, match="^train/a.csv.gz is not a valid gzip file"):
        list(CsvReader().batches(maybe_gunzip(io.BytesIO(body), "train/a.csv.gz"), "train/a.csv.gz", 1000))


def test_a_corrupt_gzip_channel_file_fails_the_job_as_a_client_error(base_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.csv.gz"
    rows = np.random.default_rng(0).random((5000, 2))
    data.write_bytes(gzip.compress("\n".join(f"{a},{b}" for a, b in rows).encode())[:3000])
    write_job(base_dir, {"k": "2", "feature_dim": "2"}, {"train": ([data], "text/csv")})
    assert run_training(KMeans, Paths(base_dir)) == 1
    assert (base_dir / "output" / "failure").read_text().startswith(
        "ClientError: train/d.csv.gz is not a valid gzip file")


@pytest.mark.parametrize("file, content, message", [
    ("hyperparameters.json", [1, 2], "hyperparameters.json must hold a JSON object like {\"k\": \"10\"}; it holds "
                                     "list [1, 2]."),
    ("hyperparameters.json", "\"k\"", "hyperparameters.json must hold a JSON object"),
    ("inputdataconfig.json", {"train": "text/csv"}, "inputdataconfig.json: channel 'train' must be an object"),
    ("inputdataconfig.json", {"train": None}, "inputdataconfig.json: channel 'train' must be an object"),
    ("inputdataconfig.json", {"train": {"ContentType": 5}}, "inputdataconfig.json: channel 'train' must be an object"),
    ("inputdataconfig.json", [], "inputdataconfig.json must hold a JSON object"),
])
def test_malformed_config_files_are_client_errors_naming_the_file(base_dir: Path, tmp_path: Path, file: str,
                                                                  content: object, message: str) -> None:
    data = tmp_path / "d.csv"
    data.write_text("1,2\n")
    write_job(base_dir, {"k": "1", "feature_dim": "2"}, {"train": ([data], "text/csv")})
    (base_dir / "input" / "config" / file).write_text(json.dumps(content))
    assert run_training(KMeans, Paths(base_dir)) == 1
    assert (base_dir / "output" / "failure").read_text().startswith("ClientError: " + message)


def test_config_file_that_is_not_utf8_or_nests_too_deeply(base_dir: Path) -> None:
    write_job(base_dir, {}, {})
    config = base_dir / "input" / "config" / "hyperparameters.json"
    for content, message in [(b"\xff\xfe{", "hyperparameters.json is not UTF-8 text."),
                             (b"[" * 100_000, "hyperparameters.json nests JSON too deeply to read.")]:
        config.write_bytes(content)
        assert run_training(KMeans, Paths(base_dir)) == 1
        assert (base_dir / "output" / "failure").read_text() == "ClientError: " + message


def _tar(member: tarfile.TarInfo) -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(member, io.BytesIO(b"x" * member.size))
    buffer.seek(0)
    return tarfile.open(fileobj=buffer)


@pytest.mark.parametrize("name, kind, link, allowed", [
    ("train.py", tarfile.REGTYPE, "", True), ("lib/link.py", tarfile.SYMTYPE, "../train.py", True),
    ("../evil.py", tarfile.REGTYPE, "", False), ("/etc/evil.py", tarfile.REGTYPE, "", False),
    ("link", tarfile.SYMTYPE, "../../etc/passwd", False), ("hard", tarfile.LNKTYPE, "../x", False),
    ("dev", tarfile.CHRTYPE, "", False),
])
def test_code_archives_without_extraction_filters_refuse_what_the_data_filter_refuses(
        tmp_path: Path, name: str, kind: bytes, link: str, allowed: bool) -> None:
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    with _tar(member) as tar:
        if allowed:
            assert [m.name for m in _checked_members(tar, tmp_path)] == [name]
        else:
            with pytest.raises(tarfile.TarError, match="points outside the code folder"):
                _checked_members(tar, tmp_path)


@pytest.mark.parametrize("algorithm, rounds", [(LightGBM, "num_boost_round"), ("catboost", "iterations")])
def test_tabular_images_read_gzip_and_name_bad_bytes_and_infinite_values(tmp_path: Path, algorithm, rounds) -> None:
    if algorithm == "catboost":
        from algorithms.catboost.algorithm import CatBoost as algorithm
    rng = np.random.default_rng(0)
    x = rng.random((120, 3))
    text = "\n".join(",".join(map(str, [float(a > 0.5), *r])) for a, r in zip(x[:, 0], x)).encode()
    cases = [("d.csv.gz", gzip.compress(text), None),
             ("d.csv", text.replace(b"\n", b"\n1,\xff,2,3\n", 1), "Line 2 of d.csv, column 2: '\ufffd' is not a number "
                                                                   "(it holds bytes that are not UTF-8)."),
             ("d.csv.gz", gzip.compress(text)[:300], "d.csv.gz is not a valid gzip file"),
             ("d.csv", text.replace(b"\n", b"\n1,2,3,1e400\n", 1), "Row 2 of the training data, column 4 is inf")]
    for number, (name, content, message) in enumerate(cases):
        data = tmp_path / str(number) / name
        data.parent.mkdir()
        data.write_bytes(content)
        base = tmp_path / str(number) / "ml"
        write_job(base, {rounds: "3"}, {"train": ([data], "text/csv")})
        code = run_training(algorithm, Paths(base))
        if message is None:
            assert code == 0, (base / "output" / "failure").read_text()
        else:
            assert code == 1 and (base / "output" / "failure").read_text().startswith("ClientError: " + message)
