"""What a training script is given, as SageMaker's training toolkit gives it: hyperparameters JSON-decoded,
the SDK's `sagemaker_*` keys split off, the `--name value` arguments and the `SM_*` variables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from common.paths import Paths

# Split off by the toolkit (params.SAGEMAKER_HYPERPARAMETERS), as is every other key starting with sagemaker_.
RESERVED = ("sagemaker_program", "sagemaker_submit_directory", "sagemaker_enable_cloudwatch_metrics",
            "sagemaker_region", "sagemaker_container_log_level", "sagemaker_job_name", "default_user_module_name",
            "_tuning_objective_metric", "sagemaker_s3_output")


def decode(raw: dict[str, Any]) -> dict[str, Any]:
    """Each value JSON-decoded when it is JSON (`"0.1"` -> 0.1, `"\\"abc\\""` -> "abc"), else kept as sent."""
    decoded = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value)
        except (TypeError, ValueError):
            decoded[key] = value
    return decoded


def split(decoded: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the user's hyperparameters, the SDK's sagemaker_* and other reserved keys)."""
    sagemaker = {k: v for k, v in decoded.items() if k in RESERVED or k.startswith("sagemaker_")}
    return {k: v for k, v in decoded.items() if k not in sagemaker}, sagemaker


def cli_args(hyperparameters: dict[str, Any]) -> list[str]:
    """Sorted `--name value` pairs (`-n value` for one-letter names); a dict value becomes `k1=v1,k2=v2`."""
    args = []
    for key in sorted(hyperparameters):
        value = hyperparameters[key]
        args.append(f"--{key}" if len(key) > 1 else f"-{key}")
        if isinstance(value, dict):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append("" if value is None else str(value))
    return args


def env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass
class ScriptJob:
    paths: Paths
    hyperparameters: dict[str, Any]      # the user's, decoded
    sagemaker: dict[str, Any]            # sagemaker_* and reserved keys, decoded
    program: str                         # e.g. train.py
    module_dir: str                      # the submit directory as given (S3 URI, tarball or folder)
    input_data_config: dict[str, Any]
    resource_config: dict[str, Any]

    def environment(self) -> dict[str, str]:
        """The SM_* variables (the toolkit's Environment.to_env_vars), plus the input paths AWS's XGBoost image sets."""
        paths, resource = self.paths, self.resource_config
        hosts = resource.get("hosts") or ["algo-1"]
        current = resource.get("current_host") or hosts[0]
        group = resource.get("current_group_name") or resource.get("current_instance_group") or "homogeneousCluster"
        groups = resource.get("instance_groups") or []
        channels = {name: str(paths.data / name) for name in self.input_data_config}
        properties: dict[str, Any] = {
            "additional_framework_parameters": {k: v for k, v in self.sagemaker.items() if k not in RESERVED},
            "channel_input_dirs": channels, "current_host": current, "current_instance_group": group,
            "current_instance_group_hosts": next((g.get("hosts", []) for g in groups
                                                  if g.get("instance_group_name") == group), []),
            "current_instance_type": resource.get("current_instance_type", "local"),
            "distribution_instance_groups": [], "framework_module": None, "hosts": hosts,
            "hyperparameters": self.hyperparameters, "input_config_dir": str(paths.config),
            "input_data_config": self.input_data_config, "input_dir": str(paths.base / "input"),
            "instance_groups": [g.get("instance_group_name") for g in groups],
            "instance_groups_dict": {g.get("instance_group_name"): g for g in groups},
            "is_hetero": len(groups) > 1, "is_master": current == hosts[0],
            "job_name": os.environ.get("TRAINING_JOB_NAME"),
            "log_level": self.sagemaker.get("sagemaker_container_log_level", 20), "master_hostname": hosts[0],
            "model_dir": str(paths.model), "module_dir": self.module_dir, "module_name": self.module_name,
            "network_interface_name": resource.get("network_interface_name", "eth0"),
            "num_cpus": os.cpu_count() or 1, "num_gpus": num_gpus(), "num_neurons": 0,
            "output_data_dir": str(paths.output_data), "output_dir": str(paths.output),
            "output_intermediate_dir": str(paths.output / "intermediate"),
            "resource_config": resource, "user_entry_point": self.program,
        }
        names = ("current_host", "current_instance_group", "current_instance_group_hosts", "current_instance_type",
                 "distribution_instance_groups", "framework_module", "hosts", "input_config_dir",
                 "input_data_config", "input_dir", "instance_groups", "instance_groups_dict", "is_hetero",
                 "log_level", "model_dir", "module_dir", "module_name", "network_interface_name", "num_cpus",
                 "num_gpus", "num_neurons", "output_data_dir", "output_dir", "output_intermediate_dir",
                 "resource_config", "user_entry_point")
        env = {name: properties[name] for name in names}
        env.update(hps=self.hyperparameters, framework_params=properties["additional_framework_parameters"],
                   channels=sorted(channels), training_env=properties, user_args=cli_args(self.hyperparameters))
        env.update({f"channel_{name}": path for name, path in channels.items()})
        env.update({f"hp_{key}": value for key, value in self.hyperparameters.items()})
        variables = {f"SM_{key.upper()}": env_value(value) for key, value in env.items()}
        variables.update(SM_INPUT=str(paths.base / "input"), SM_INPUT_TRAINING_CONFIG_FILE=str(paths.hyperparameters),
                         SM_INPUT_DATA_CONFIG_FILE=str(paths.input_data_config),
                         SM_CHECKPOINT_CONFIG_FILE=str(paths.checkpoint_config), CURRENT_HOST=current)
        return variables

    @property
    def module_name(self) -> str:
        return self.program[:-3] if self.program.endswith(".py") else self.program


def num_gpus() -> int:
    """As the toolkit counts them: the lines of `nvidia-smi --list-gpus`; 0 without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))

