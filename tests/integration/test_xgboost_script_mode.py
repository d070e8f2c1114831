"""XGBoost script mode through `python -m common.entrypoint` as the image runs it: seeds 001/003's Titanic script
from a sourcedir.tar.gz with a requirements.txt, failures, SIGTERM, two hosts with rabit_run, and serving."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
import xgboost as xgb
from sklearn.datasets import load_breast_cancer

from tests.integration.helpers import serving, train, train_hosts
from tools.local import entrypoint_env, write_job

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "xgboost_script"
TITANIC_HP = {"train": "titanic_train.csv", "max_depth": 3, "eta": 0.1, "subsample": 0.8, "colsample_bytree": 0.8,
              "num_round": 20, "use_mylib": True}
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # pip must never need the network here


def sdk_hyperparameters(user: dict, program: str, submit_dir: str | Path) -> dict[str, str]:
    """What sagemaker.xgboost.XGBoost(entry_point=program, hyperparameters=user).fit() writes: json.dumps'ed."""
    extra = {"sagemaker_program": program, "sagemaker_submit_directory": str(submit_dir),
             "sagemaker_container_log_level": 20, "sagemaker_job_name": "xgb-script", "sagemaker_region": "eu-west-1"}
    return {k: json.dumps(v) for k, v in {**user, **extra}.items()}


def titanic_csv(path: Path, rows: int = 300) -> Path:
    """Titanic-shaped synthetic rows with a header, missing ages and embarkation ports, as the seeds' CSV."""
    rng = np.random.default_rng(0)
    sex, pclass = rng.choice(["male", "female"], rows), rng.integers(1, 4, rows)
    age = rng.uniform(1, 80, rows)
    age[rng.random(rows) < 0.2] = np.nan
    survived = ((sex == "female") & (pclass < 3)) | (rng.random(rows) < 0.1)
    pd.DataFrame({"PassengerId": np.arange(1, rows + 1), "Survived": survived.astype(int), "Pclass": pclass,
                  "Name": [f"Passenger {i}" for i in range(rows)], "Sex": sex, "Age": age,
                  "SibSp": rng.integers(0, 3, rows), "Parch": rng.integers(0, 3, rows), "Ticket": "A/5 21171",
                  "Fare": rng.uniform(5, 100, rows), "Cabin": None,
                  "Embarked": rng.choice(["C", "Q", "S", None], rows)}).to_csv(path, index=False)
    return path


def local_wheel(folder: Path) -> Path:
    """A one-module wheel (mylib, VALUE = "from the wheel") that pip installs with no index and no build step."""
    files = {"mylib/__init__.py": b'VALUE = "from the wheel"\n',
             "mylib-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: mylib\nVersion: 0.1\n",
             "mylib-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                          b"Tag: py3-none-any\n"}

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{name},sha256={digest(data)},{len(data)}\n" for name, data in files.items())
    record += "mylib-0.1.dist-info/RECORD,,\n"
    wheel = folder / "mylib-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in {**files, "mylib-0.1.dist-info/RECORD": record.encode()}.items():
            archive.writestr(name, data)
    return wheel


def sourcedir(path: Path, files: dict[str, Path | str]) -> Path:
    """The SDK's sourcedir.tar.gz: the entry point and its folder's files at the top level."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            data = content.read_bytes() if isinstance(content, Path) else content.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def titanic(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("titanic")
    wheel = local_wheel(root)
    archive = sourcedir(root / "sourcedir.tar.gz", {"train_xgboost.py": FIXTURES / "train_xgboost.py",
                                                     "requirements.txt": f"# installed before training\n{wheel}\n"})
    base = root / "ml"
    write_job(base, sdk_hyperparameters(TITANIC_HP, "train_xgboost.py", archive),
              {"train": ([titanic_csv(root / "titanic_train.csv")], "csv")})
    site = root / "site-packages"  # pip --target: the test's virtualenv stays as it is
    env = {**OFFLINE, "PIP_TARGET": str(site),
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    result = train("xgboost", base, env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"root": root, "base": base, "result": result}


def test_seed_titanic_script_trains_with_its_hyperparameters_and_requirements(titanic: dict) -> None:
    base, out = titanic["base"], titanic["result"].stdout
    assert "Train size: (240, 8)" in out and f"Model saved to {base / 'model' / 'xgboost-model'}" in out
    seen = json.loads((base / "output" / "data" / "seen.json").read_text())
    assert seen["argv"] == ["--colsample_bytree", "0.8", "--eta", "0.1", "--max_depth", "3", "--num_round", "20",
                            "--subsample", "0.8", "--train", "titanic_train.csv", "--use_mylib", "True"]
    assert seen["mylib"] == "from the wheel"  # requirements.txt was installed before the script ran
    env = seen["env"]
    assert env["SM_CHANNEL_TRAIN"] == str(base / "input" / "data" / "train")
    assert env["SM_MODEL_DIR"] == str(base / "model") and env["SM_HP_NUM_ROUND"] == "20"
    assert env["SM_MODULE_DIR"].endswith("sourcedir.tar.gz") and env["SM_USER_ENTRY_POINT"] == "train_xgboost.py"
    assert (base / "code" / "train_xgboost.py").exists()  # the tarball was extracted to /opt/ml/code
    model = joblib.load(base / "model" / "xgboost-model")  # what the seeds do with the artifact
    assert model.num_boosted_rounds() == 20


def test_serving_the_titanic_model_with_the_scripts_functions(titanic: dict) -> None:
    base = titanic["base"]
    shutil.copytree(base / "code", base / "model" / "code", dirs_exist_ok=True)  # as the SDK repacks model.tar.gz
    rows = "1,1,30,0,0,50,2,1\n3,0,40,1,0,10,2,2"
    with serving("xgboost", base, extra_env={"SAGEMAKER_PROGRAM": "train_xgboost.py"}) as (url, _):
        response = requests.post(url + "/invocations", data=rows, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    model = joblib.load(base / "model" / "xgboost-model")
    expected = model.predict(xgb.DMatrix(np.array([[float(v) for v in r.split(",")] for r in rows.split("\n")])),
                             validate_features=False)
    assert response.json()["survived"] == pytest.approx(expected.tolist(), abs=1e-6)


@pytest.mark.parametrize(("exit_code", "last_line"), [(None, "ValueError: Age column has no numbers"),
                                                      (3, "custom failure: the data has no rows")])
def test_a_failing_script_fails_the_job_with_its_exit_code_and_stderr(tmp_path: Path, exit_code: int | None,
                                                                        last_line: str) -> None:
    base = tmp_path / "ml"
    code = tmp_path / "failing.py"
    shutil.copy(FIXTURES / "failing.py", code)
    user = {"exit_code": exit_code} if exit_code else {}
    # A code channel holding one script and no sagemaker_program: that script runs.
    write_job(base, {k: json.dumps(v) for k, v in user.items()}, {"code": ([code], "text/python")})
    result = train("xgboost", base, timeout=60)
    assert result.returncode == (exit_code or 1)
    assert "noise line 199 on stderr" in result.stderr and "starting" in result.stdout  # passed through
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith(f"ClientError: ExecuteUserScriptError: failing.py exited with code {exit_code or 1}.")
    assert len(failure) <= 1024 and f'{last_line}"\nCommand "' in failure


def test_requirements_that_do_not_install_and_a_missing_entry_point_are_client_errors(tmp_path: Path) -> None:
    code = tmp_path / "src"
    code.mkdir()
    shutil.copy(FIXTURES / "failing.py", code / "failing.py")
    (code / "requirements.txt").write_text("this is not a requirement !!\n")
    base = tmp_path / "ml"
    write_job(base, sdk_hyperparameters({}, "failing.py", f"file://{code}"), {})
    result = train("xgboost", base, OFFLINE, timeout=60)
    failure = (base / "output" / "failure").read_text()
    assert result.returncode == 1 and failure.startswith(
        "ClientError: Installing requirements.txt from the code folder failed (pip exit code 1): ")
    write_job(base, sdk_hyperparameters({}, "train.py", code), {})
    result = train("xgboost", base, timeout=60)
    assert result.returncode == 1
    assert (base / "output" / "failure").read_text().startswith(f"ClientError: The entry point train.py is not in "
                                                                f"the code from {code} (it holds: failing.py, ")


def test_sigterm_reaches_the_script(tmp_path: Path) -> None:
    base = tmp_path / "ml"
    shutil.copy(FIXTURES / "sigterm.py", tmp_path / "sigterm.py")
    write_job(base, sdk_hyperparameters({}, "sigterm.py", tmp_path), {})
    process = subprocess.Popen([sys.executable, "-m", "common.entrypoint", "train"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=entrypoint_env("xgboost", base))
    for line in process.stdout:  # type: ignore[union-attr]
        if line.strip() == "ready":
            break
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert process.returncode == 0  # the script saved its work and exited 0: so does the job
    assert (base / "model" / "stopped").read_text() == str(int(signal.SIGTERM))


@pytest.mark.slow  # two hosts running the user's script, rabit between them: make test-slow
def test_two_hosts_train_one_model_with_rabit_run(tmp_path: Path) -> None:
    x, y = load_breast_cancer(return_X_y=True)
    parts = []
    for i, (xs, ys) in enumerate(zip(np.array_split(x, 3), np.array_split(y, 3))):
        parts.append(tmp_path / f"part-{i}.libsvm")
        parts[-1].write_text("".join(f"{label} " + " ".join(f"{j}:{v}" for j, v in enumerate(row)) + "\n"
                                     for label, row in zip(ys, xs)))
    code = tmp_path / "src"
    code.mkdir()
    shutil.copy(FIXTURES / "distributed_train.py", code / "distributed_train.py")
    hosts = ["algo-1", "algo-2"]
    # Without scikit-learn (the script does not use it): xgboost imports it when installed, 1.5 s per process.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules.setdefault('sklearn', None)\n")
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    hp = sdk_hyperparameters({"max_depth": 3, "eta": 0.3, "objective": "binary:logistic", "num_round": 10},
                             "distributed_train.py", code)
    for rank, host in enumerate(hosts):  # 3 files on 2 instances (ShardedByS3Key): 2 + 1
        write_job(tmp_path / host, hp, {"train": (parts[rank::2], "libsvm")}, host=host, hosts=hosts,
                  distribution="ShardedByS3Key")
    results = train_hosts("xgboost", [tmp_path / host for host in hosts], hosts, env, timeout=120)
    outputs = [r.stdout for r in results]
    assert [r.returncode for r in results] == [0, 0], outputs
    assert "rank 0 of 2" in outputs[0] and "rank 1 of 2" in outputs[1]
    assert not (tmp_path / "algo-2" / "model" / "xgboost-model").exists()  # only the master saves
    booster = xgb.Booster()
    booster.load_model(bytearray((tmp_path / "algo-1" / "model" / "xgboost-model").read_bytes()))
    alone = xgb.train({"max_depth": 3, "eta": 0.3, "objective": "binary:logistic"}, xgb.DMatrix(x, label=y), 10)
    # Gradient statistics were summed over both hosts' rows: the model of all rows in one process.
    np.testing.assert_allclose(booster.predict(xgb.DMatrix(x)), alone.predict(xgb.DMatrix(x)), atol=1e-6)
