"""Framework (script) mode, shared by every image that runs the user's own code.

Training (training.py): a job naming a program (`sagemaker_program`, SAGEMAKER_PROGRAM, or a `code` channel
holding one .py file) runs it as SageMaker's training toolkit does, with the `SM_*` variables and argv of
env.py, after fetching its code (code.py, s3.py) and installing its requirements.txt. Serving (serving.py,
module.py): SAGEMAKER_PROGRAM, or the `code/inference.py` of a repacked model, names the module whose
model_fn / input_fn / predict_fn / output_fn (or transform_fn) answer /invocations.

An image opts in with a `ScriptMode` on its Algorithm class: its defaults for the handlers the module leaves
out, and the compatibility packages its scripts import (e.g. `sagemaker_xgboost_container`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.script_mode import handlers


@dataclass(frozen=True)
class ScriptMode:
    framework: str                                           # in messages: "XGBoost", "scikit-learn"
    model_fn: Callable[[str], Any] | None = None             # the default; None: the module must define one
    input_fn: Callable[[Any, str], Any] = handlers.input_fn
    predict_fn: Callable[[Any, Any], Any] = handlers.predict_fn
    output_fn: Callable[[Any, str], Any] = handlers.output_fn
    paths: tuple[Path, ...] = ()                             # importable by scripts and modules, after their own code
    scripts_only: bool = False                               # no algorithm of its own: a job without a script fails
