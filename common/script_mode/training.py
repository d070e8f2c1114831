"""Script-mode training: a job that names a program runs it, as SageMaker's training toolkit does.

The program is the SDK's `sagemaker_program` hyperparameter, else SAGEMAKER_PROGRAM, else the one .py file of
a `code` channel. Its code comes from `sagemaker_submit_directory` (a folder, `file://`, a sourcedir.tar.gz or
S3), else the `code` channel, else /opt/ml/code; the SDK puts `source_dir`'s files and each of `dependencies`
at the top of sourcedir.tar.gz, so the code folder goes first on the script's PYTHONPATH. requirements.txt is
installed first, then `python <program> --<name> <value> ...` runs in the code folder with the SM_* variables.
Nothing of algorithm mode applies. A non-zero exit fails the job with that exit code and the end of its stderr.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.paths import FAILURE_LIMIT, Paths, read_json_object
from common.script_mode import ScriptMode, child, code, env

log = logging.getLogger(__name__)
COMMAND_LIMIT = 200  # characters of the command shown in the failure file; the script's stderr gets the rest


def run_if_requested(paths: Paths, mode: ScriptMode) -> int | None:
    """The script's exit code, or None when the job is an algorithm-mode job."""
    data_config = read_json_object(paths.input_data_config, 'like {"train": {}}')
    raw = read_json_object(paths.hyperparameters, 'like {"num_round": "10"}')
    user, sagemaker = env.split(env.decode(raw))
    code_channel = paths.data / "code" if "code" in data_config else None
    program = _text(sagemaker.get("sagemaker_program")) or os.environ.get("SAGEMAKER_PROGRAM", "").strip()
    program = program or _single_script(code_channel)
    if not program:
        if mode.scripts_only:
            raise UserError(f"This image runs training scripts only, as SageMaker's {mode.framework} framework "
                            "container does, and the job names none: pass entry_point (the sagemaker_program "
                            "hyperparameter) with its source_dir, or a 'code' channel holding one .py file.")
        if code_channel is not None:
            log.warning("The code channel is ignored: name the script with sagemaker_program to run it.")
        return None
    source = _text(sagemaker.get("sagemaker_submit_directory")) or os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    source = source.strip() or _channel_source(code_channel) or str(paths.base / "code")
    log.info("Script mode: running %s from %s.", program, source)
    code_dir = code.fetch(source, paths, paths.base / "code", _text(sagemaker.get("sagemaker_region")))
    if not (code_dir / program).is_file():
        found = sorted(p.name for p in code_dir.iterdir() if p.name != ".sagemaker-source")[:10] \
            if code_dir.is_dir() else []
        raise UserError(f"The entry point {program} is not in the code from {source} (it holds: "
                        f"{', '.join(found) or 'nothing'}).")
    code.install_requirements(code_dir)
    job = env.ScriptJob(paths, user, sagemaker, program, source, data_config,
                        read_json_object(paths.resource_config, 'like {"hosts": ["algo-1"]}'))
    for folder in (paths.model, paths.output_data, paths.output / "intermediate"):  # as SageMaker provides them
        folder.mkdir(parents=True, exist_ok=True)
    variables = {**os.environ, **job.environment(), "PYTHONPATH": pythonpath(code_dir, mode)}
    variables.setdefault("PYTHONUNBUFFERED", "1")
    args = env.cli_args(user)
    command = [sys.executable, program, *args] if program.endswith(".py") else \
        ["/bin/sh", "-c", f"./{program} {shlex.join(args)}"]
    exit_code, stderr_tail = child.run(command, code_dir, variables)
    if exit_code == 0:
        log.info("The script %s finished.", program)
        return 0
    message = failure_message(program, exit_code, stderr_tail, command)
    log.error("%s", message)
    paths.write_failure(message)
    return exit_code


def pythonpath(code_dir: Path, mode: ScriptMode) -> str:
    """The code folder (with its dependencies), then the image's compatibility packages, then what was set."""
    parts = [str(code_dir), *(str(p) for p in mode.paths), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def failure_message(program: str, exit_code: int, stderr_tail: str, command: list[str]) -> str:
    """The training toolkit's ExecuteUserScriptError text, with as much of the stderr tail as fits."""
    shown = shlex.join(command)
    shown = shown if len(shown) <= COMMAND_LIMIT else shown[:COMMAND_LIMIT - 3] + "..."
    head = (f"ClientError: ExecuteUserScriptError: {program} exited with code {exit_code}.\n"
            f'ExitCode {exit_code}\nErrorMessage "')
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
