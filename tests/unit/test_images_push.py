"""`make push-<image>` without what a push needs: one sentence naming what is missing, before anything is built.

AWS is never called: `aws` is either absent from PATH or a stand-in script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NO_CREDENTIALS = 'Unable to locate credentials. You can configure credentials by running "aws configure".'
REGION_HINT = "a region (REGION=eu-west-1, AWS_REGION or `aws configure set region`)"


def bin_folder(tmp_path: Path, aws_script: str | None = None) -> Path:
    """A PATH of its own: `make`, and `aws` only when a stand-in script is given."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "make").symlink_to(shutil.which("make") or "/usr/bin/make")
    if aws_script is not None:
        (folder / "aws").write_text("#!/bin/sh\n" + aws_script)
        (folder / "aws").chmod(0o755)
    return folder


def clean_env(path: Path) -> dict[str, str]:
    unset = {"AWS_REGION", "AWS_DEFAULT_REGION", "ACCOUNT", "REGION", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
    return {**{k: v for k, v in os.environ.items() if k not in unset}, "PATH": str(path)}


def make_push(tmp_path: Path, aws_script: str | None, *variables: str) -> subprocess.CompletedProcess:
    # -o: never (re)install the venv here, whatever its age; only the push recipe is under test.
    return subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "push-kmeans", *variables],
                          cwd=REPO, env=clean_env(bin_folder(tmp_path, aws_script)), capture_output=True, text=True,
                          timeout=120)


def push_target(tmp_path: Path, aws_script: str, **variables: str) -> subprocess.CompletedProcess:
    env = {**clean_env(bin_folder(tmp_path, aws_script)), **variables}
    return subprocess.run([sys.executable, "docker/images.py", "push-target", "kmeans"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_without_the_aws_cli_it_names_all_that_is_missing(tmp_path: Path) -> None:
    result = make_push(tmp_path, None)
    assert result.returncode != 0
    assert ("make push-kmeans cannot push: missing the AWS CLI (`aws` is not on PATH), an account "
            f"(ACCOUNT=123456789012, or credentials to look it up) and {REGION_HINT}.\n") in result.stderr
    assert "docker/Dockerfile" not in result.stdout + result.stderr  # no build was started


def test_without_credentials_it_says_so_and_why(tmp_path: Path) -> None:
    no_credentials = f"case \"$1\" in sts) echo '{NO_CREDENTIALS}' >&2; exit 255;; esac\nexit 1\n"
    result = make_push(tmp_path, no_credentials, "ACCOUNT=123456789012", "REGION=eu-west-1")
    assert result.returncode != 0
    assert ("make push-kmeans cannot push: missing AWS credentials (aws sts get-caller-identity: "
            f"{NO_CREDENTIALS.rstrip('.')}).\n") in result.stderr
    assert "inappropriate ioctl" not in result.stderr


def test_the_region_and_account_come_from_the_aws_cli_when_not_given(tmp_path: Path) -> None:
    found = 'case "$1 $2" in "sts get-caller-identity") echo 123456789012;; "configure get") echo eu-west-3;; esac\n'
    result = push_target(tmp_path, found)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "123456789012.dkr.ecr.eu-west-3.amazonaws.com eu-west-3\n"


def test_a_malformed_account_or_region_is_named(tmp_path: Path) -> None:
    result = push_target(tmp_path, 'case "$1" in sts) echo 123456789012;; esac\n', ACCOUNT="12", REGION="eu_west")
    assert result.returncode == 1
    assert ("missing a 12-digit account id (ACCOUNT=12 is not one) and a region name like eu-west-1 "
            "(REGION=eu_west is not one).") in result.stderr
