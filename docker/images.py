"""Reads images.yaml, the only list of images, for docker/images.mk and tests/container.

    python docker/images.py names               kmeans pca ...
    python docker/images.py build-args NAME     --build-arg BASE=... --build-arg ALGORITHM=... ...
    python docker/images.py versions NAME       the emulated versions, each tagged <prefix><NAME>:<version>
    python docker/images.py get NAME FIELD      one of: algorithm, base, requirements, system_packages, versions
    python docker/images.py push-target NAME    "REGISTRY REGION" for make push-NAME (ACCOUNT, REGION from the
                                                environment), or one sentence naming what is missing, exit 1

An entry whose algorithm folder does not exist yet is skipped with a warning, so an image
can be listed before its code lands without breaking every other target.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
FIELDS = ("algorithm", "base", "requirements", "system_packages", "versions")
SAFE = re.compile(r"[A-Za-z0-9._/:@-]+")


@dataclass(frozen=True)
class Image:
    name: str
    algorithm: str    # folder under algorithms/, and the image's ALGORITHM
    base: str         # FROM image
    requirements: str  # installed after common/requirements.txt, relative to the repository
    system_packages: str = ""  # Debian packages, comma-separated (the Makefile passes no spaces)
    versions: tuple[str, ...] = ()  # emulated versions: each a tag of the same build (SAGEMAKER_EMULATED_VERSION)

    def build_args(self) -> dict[str, str]:
        return {"BASE": self.base, "ALGORITHM": self.algorithm, "REQUIREMENTS": self.requirements,
                "SYSTEM_PACKAGES": self.system_packages}


def load(path: Path = REPO / "images.yaml") -> dict[str, Image]:
    document = yaml.safe_load(path.read_text()) or {}
    defaults = document.get("defaults") or {}
    images: dict[str, Image] = {}
    for name, entry in (document.get("images") or {}).items():
        entry = entry or {}
        unknown = set(entry) - set(FIELDS)
        if unknown:
            raise SystemExit(f"images.yaml: {name} has unknown field(s) {sorted(unknown)}; known: {FIELDS}")
        algorithm = entry.get("algorithm", name)
        if not (REPO / "algorithms" / algorithm / "__init__.py").is_file():
            print(f"images.yaml: skipping {name}: algorithms/{algorithm}/ does not exist yet", file=sys.stderr)
            continue
        requirements = entry.get("requirements", f"algorithms/{algorithm}/requirements.txt")
        if not (REPO / requirements).is_file():
            raise SystemExit(f"images.yaml: {name}: {requirements} is missing (an empty file will do)")
        base = entry.get("base", defaults.get("base", "python:3.11-slim-bookworm"))
        packages = entry.get("system_packages") or []
        packages = packages.split() if isinstance(packages, str) else [str(p) for p in packages]
        versions = tuple(str(v) for v in entry.get("versions") or ())
        for value in (algorithm, base, requirements, *packages, *versions):
            if not SAFE.fullmatch(str(value)):  # the Makefile passes them unquoted
                raise SystemExit(f"images.yaml: {name}: '{value}' may only use letters, digits and ._/:@-")
        images[name] = Image(name, algorithm, base, requirements, ",".join(packages), versions)
    return images


def _image(name: str) -> Image:
    images = load()
    if name not in images:
        raise SystemExit(f"no image '{name}' in images.yaml; images: {' '.join(images) or 'none'}")
    return images[name]


def push_target(name: str, account: str, region: str) -> tuple[str, str]:
    """The ECR registry and region `make push-NAME` pushes to; SystemExit naming everything that is missing.

    The credentials are checked, and the account found when not given, by `aws sts get-caller-identity`."""
    _image(name)
    missing = []
    aws = shutil.which("aws")
    if aws is None:
        missing.append("the AWS CLI (`aws` is not on PATH)")
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or (
        _aws_output(aws, "configure", "get", "region") if aws else "")
    if aws:
        identity = subprocess.run([aws, "sts", "get-caller-identity", "--query", "Account", "--output", "text",
                                   *(["--region", region] if region else [])],
                                  capture_output=True, text=True, timeout=120)
        if identity.returncode != 0:
            reason = (identity.stderr.strip().splitlines() or [f"exit status {identity.returncode}"])[-1]
            missing.append(f"AWS credentials (aws sts get-caller-identity: {reason.rstrip('.')})")
        account = account or identity.stdout.strip()
    if not account:
        missing.append("an account (ACCOUNT=123456789012, or credentials to look it up)")
    elif not re.fullmatch(r"\d{12}", account):
        missing.append(f"a 12-digit account id (ACCOUNT={account} is not one)")
    if not region:
        missing.append("a region (REGION=eu-west-1, AWS_REGION or `aws configure set region`)")
    elif not re.fullmatch(r"[a-z]+(-[a-z]+)+-\d+", region):
        missing.append(f"a region name like eu-west-1 (REGION={region} is not one)")
    if missing:
        raise SystemExit(f"make push-{name} cannot push: missing {_and(missing)}.")
    return f"{account}.dkr.ecr.{region}.amazonaws.com", region


def _aws_output(aws: str, *args: str) -> str:
    result = subprocess.run([aws, *args], capture_output=True, text=True, timeout=60)
    return result.stdout.strip() if result.returncode == 0 else ""


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def main(argv: list[str]) -> int:
    if argv[:1] == ["names"] and len(argv) == 1:
        print(" ".join(load()))
    elif argv[:1] == ["build-args"] and len(argv) == 2:
        args = _image(argv[1]).build_args()
        print(" ".join(f"--build-arg {key}={value}" for key, value in args.items()))
    elif argv[:1] == ["versions"] and len(argv) == 2:
        print(" ".join(_image(argv[1]).versions))
    elif argv[:1] == ["get"] and len(argv) == 3 and argv[2] in FIELDS:
        value = getattr(_image(argv[1]), argv[2])
        print(" ".join(value) if isinstance(value, tuple) else value)
    elif argv[:1] == ["push-target"] and len(argv) == 2:
        print(" ".join(push_target(argv[1], os.environ.get("ACCOUNT", ""), os.environ.get("REGION", ""))))
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
