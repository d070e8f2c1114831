"""Images that run the user's code only (sklearn): a training script and an inference module, for real.

The code travels as SageMaker's SDK sends it in local mode: the script folder in /opt/ml/code named by the
JSON-quoted `sagemaker_submit_directory`, and, for serving, the model's `code/` folder with SAGEMAKER_PROGRAM.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.container.test_images import _find_engine, _logs, _run, _selected, _serving
from tools.local import write_job

pytestmark = pytest.mark.container

TRAIN = '''
import argparse, os
import joblib, numpy as np
from sklearn.linear_model import LinearRegression

parser = argparse.ArgumentParser()
parser.add_argument("--fit_intercept", type=str, default="True")
args, _ = parser.parse_known_args()
data = np.loadtxt(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "train.csv"), delimiter=",")
model = LinearRegression(fit_intercept=args.fit_intercept == "True").fit(data[:, 1:], data[:, 0])
rmse = float(np.sqrt(np.mean((model.predict(data[:, 1:]) - data[:, 0]) ** 2)))
print(f"validation-rmse:{rmse:.6f};")
joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
'''
INFERENCE = '''
def predict_fn(data, model):
    return model.predict(data) * 1.0
'''


@pytest.fixture(scope="module", params=_selected(script_only=True))
def image(request: pytest.FixtureRequest) -> tuple[list[str], str]:
    engine = _find_engine()
    if engine is None:
        pytest.skip("no usable container engine (docker daemon or podman: docker/setup-podman.sh)")
    tag = f"{os.environ.get('IMAGE_PREFIX', 'sagemaker-')}{request.param}:{os.environ.get('IMAGE_TAG', 'latest')}"
    if subprocess.run([*engine, "image", "inspect", tag], capture_output=True).returncode != 0:
        if os.environ.get("CONTAINER_IMAGES"):
            pytest.fail(f"{tag} was asked for but is not built")
        pytest.skip(f"{tag} is not built (make image-{request.param})")
    return engine, tag


def test_script_trains_and_inference_module_serves(image: tuple[list[str], str], tmp_path: Path) -> None:
    engine, tag = image
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 3.0
    data = tmp_path / "train.csv"
    np.savetxt(data, np.column_stack([y, x]), delimiter=",")
    base = tmp_path / "opt_ml"
    write_job(base, {"fit_intercept": "True", "sagemaker_program": '"train.py"',
                     "sagemaker_submit_directory": '"/opt/ml/code"'}, {"train": ([data], "text/csv")})
    (base / "code").mkdir()
    (base / "code" / "train.py").write_text(TRAIN)
    trained = _run(engine, "-v", f"{base}:/opt/ml", tag, "train")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "validation-rmse:0.000000;" in trained.stdout
    model = base / "model"
    (model / "code").mkdir()
    (model / "code" / "inference.py").write_text(INFERENCE)
    with _serving(engine, tag, model) as server:
        body = "\n".join(",".join(repr(float(v)) for v in row) for row in x[:3])
        answer = requests.post(server.url + "/invocations", data=body, timeout=30,
                               headers={"Content-Type": "text/csv", "Accept": "application/json"})
        assert answer.status_code == 200, answer.text + _logs(engine, server.container)
        np.testing.assert_allclose(json.loads(answer.text), y[:3], rtol=1e-6)


def test_a_job_without_a_script_is_a_client_error(image: tuple[list[str], str], tmp_path: Path) -> None:
    engine, tag = image
    base = tmp_path / "opt_ml"
    write_job(base, {}, {})
    result = _run(engine, "-v", f"{base}:/opt/ml", tag, "train")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sagemaker_program" in (base / "output" / "failure").read_text()


def test_no_argument_prints_usage(image: tuple[list[str], str]) -> None:
    engine, tag = image
    usage = _run(engine, tag, timeout=60)
    assert usage.returncode == 2 and "usage:" in usage.stderr
