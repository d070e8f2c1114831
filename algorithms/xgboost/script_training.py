"""XGBoost framework (script) mode, training (spec xgboost.md §1.2, §8).

A job is in script mode when it names a program: the SDK's `sagemaker_program` hyperparameter (or
SAGEMAKER_PROGRAM), or a `code` channel holding exactly one .py file. The code comes from
`sagemaker_submit_directory` (a folder, `file://`, a sourcedir.tar.gz, or S3 when boto3 is installed), else
the `code` channel, else /opt/ml/code. Its requirements.txt is installed with pip, then the program runs as
`python <program> --<name> <value> ...` in the code folder with the SM_* variables (script_env.py). Nothing
of algorithm mode applies. A non-zero exit fails the job with that exit code and the end of its stderr.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from algorithms.xgboost import child, script_env, user_code
from common.errors import UserError
from common.paths import Paths, read_json_object
from common.training import FAILURE_LIMIT

log = logging.getLogger(__name__)
COMMAND_LIMIT = 200  # characters of the command shown in the failure file; the script's stderr gets the rest


def run_if_requested(paths: Paths) -> int | None:
    """The script's exit code, or None when the job is an algorithm-mode job."""
    data_config = read_json_object(paths.input_data_config, 'like {"train": {}}')
    raw = read_json_object(paths.hyperparameters, 'like {"num_round": "10"}')
    user, sagemaker = script_env.split(script_env.decode(raw))
    code_channel = paths.data / "code" if "code" in data_config else None
    program = _text(sagemaker.get("sagemaker_program")) or os.environ.get("SAGEMAKER_PROGRAM", "").strip()
    program = program or _single_script(code_channel)
    if not program:
        if code_channel is not None:
            log.warning("The code channel is ignored: name the script with sagemaker_program to run it.")
        return None
    source = _text(sagemaker.get("sagemaker_submit_directory")) or os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    source = source.strip() or _channel_source(code_channel) or str(paths.base / "code")
    log.info("Script mode: running %s from %s.", program, source)
    code_dir = user_code.fetch(source, paths, paths.base / "code")
    if not (code_dir / program).is_file():
        found = sorted(p.name for p in code_dir.iterdir())[:10] if code_dir.is_dir() else []
        raise UserError(f"The entry point {program} is not in the code from {source} (it holds: "
                        f"{', '.join(found) or 'nothing'}).")
    user_code.install_requirements(code_dir)
    job = script_env.ScriptJob(paths, user, sagemaker, program, source, data_config,
                               read_json_object(paths.resource_config, 'like {"hosts": ["algo-1"]}'))
    for folder in (paths.model, paths.output_data, paths.output / "intermediate"):  # as SageMaker provides them
        folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **job.environment(), "PYTHONPATH": _pythonpath()}
    env.setdefault("PYTHONUNBUFFERED", "1")
    args = script_env.cli_args(user)
    command = [sys.executable, program, *args] if program.endswith(".py") else \
        ["/bin/sh", "-c", f"./{program} {shlex.join(args)}"]
    code, stderr_tail = child.run(command, code_dir, env)
    if code == 0:
        log.info("The script %s finished.", program)
        return 0
    message = failure_message(program, code, stderr_tail, command)
    log.error("%s", message)
    paths.output.mkdir(parents=True, exist_ok=True)
    paths.failure.write_text(message[:FAILURE_LIMIT])
    return code


def failure_message(program: str, code: int, stderr_tail: str, command: list[str]) -> str:
    """The training toolkit's ExecuteUserScriptError text, with as much of the stderr tail as fits."""
    shown = shlex.join(command)
    shown = shown if len(shown) <= COMMAND_LIMIT else shown[:COMMAND_LIMIT - 3] + "..."
    head = f'ClientError: ExecuteUserScriptError: {program} exited with code {code}.\nExitCode {code}\nErrorMessage "'
    end = f'"\nCommand "{shown}"'
    text = stderr_tail.strip()
    budget = max(0, FAILURE_LIMIT - len(head) - len(end))
    if len(text) > budget:
        text = text[len(text) - budget:]
        text = text.split("\n", 1)[1] if "\n" in text else text  # start at a whole line
    return head + text + end


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _single_script(code_channel: Path | None) -> str:
    scripts = sorted(p.name for p in code_channel.glob("*.py")) if code_channel is not None else []
    return scripts[0] if len(scripts) == 1 else ""


def _channel_source(code_channel: Path | None) -> str:
    """The code channel's sourcedir.tar.gz (what the SDK uploads with network isolation), else the folder."""
    if code_channel is None:
        return ""
    archive = code_channel / "sourcedir.tar.gz"
    return str(archive if archive.is_file() else code_channel)


def _pythonpath() -> str:
    """The script imports sagemaker_xgboost_container (compat/), which imports the image's own code."""
    parts = [str(user_code.COMPAT_DIR), str(user_code.REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)
