"""The `sklearn` image: SageMaker's SKLearn framework container (1.0-1 and later), which has no algorithm of
its own. Training runs the job's script and serving the user's inference module (common/script_mode); a job
or endpoint that names none is a ClientError. Defaults for what the module leaves out: model_fn loads
`model.joblib` (else `model.pkl`) with joblib; input_fn and output_fn read and write text/csv,
application/json and application/x-npy; predict_fn is `model.predict(data)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.algorithm import Algorithm, TrainingJob
from common.data.batch import Batch
from common.data.columns import Columns
from common.errors import UserError
from common.hyperparameters import Hyperparameters
from common.script_mode import ScriptMode, handlers
from common.serving.request import Options

MODEL_FILES = ("model.joblib", "model.pkl")
COMPAT_DIR = Path(__file__).resolve().parent / "compat"  # the importable sagemaker_containers


def _model_fn(model_dir: str) -> Any:
    import joblib

    for name in MODEL_FILES:
        if (Path(model_dir) / name).is_file():
            return joblib.load(Path(model_dir) / name)  # joblib reads plain pickles too
    raise UserError(f"the model directory {model_dir} has neither {' nor '.join(MODEL_FILES)}.")


class SKLearn(Algorithm):
    name = "sklearn"
    Hyperparameters = Hyperparameters  # a script's hyperparameters are its own: none are checked here
    channels = ()
    script_mode = ScriptMode("SKLearn", model_fn=_model_fn, paths=(COMPAT_DIR,), scripts_only=True)
    request_types = handlers.INPUT_TYPES  # what the default input_fn and output_fn read and write
    response_types = handlers.OUTPUT_TYPES

    @classmethod
    def describe(cls) -> dict[str, Any]:
        described = super().describe()
        described["metric_definitions"] = []  # the script prints its own lines: its estimator names the regexes
        return described

    @classmethod
    def train(cls, job: TrainingJob) -> None:
        raise UserError("This image runs training scripts only: name one with the sagemaker_program hyperparameter.")

    def save(self, model_dir: Path) -> None:
        raise NotImplementedError("the user's training script saves its model")

    @classmethod
    def load(cls, model_dir: Path) -> Algorithm:
        raise UserError("This image serves inference modules only: set SAGEMAKER_PROGRAM.")

    def predict(self, batch: Batch, options: Options) -> Columns:
        raise NotImplementedError("the user's inference module answers every request")
