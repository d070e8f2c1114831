"""The container engine and the image under test, for every test module here (each defines its own `name`)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.container.test_images import _find_engine


@pytest.fixture(scope="session")
def engine() -> list[str]:
    command = _find_engine()
    if command is None:
        pytest.skip("no usable container engine (docker daemon or podman: docker/setup-podman.sh)")
    return command


@pytest.fixture(scope="module")
def image(name: str, engine: list[str]) -> str:
    tag = f"{os.environ.get('IMAGE_PREFIX', 'sagemaker-')}{name}:{os.environ.get('IMAGE_TAG', 'latest')}"
    if subprocess.run([*engine, "image", "inspect", tag], capture_output=True).returncode != 0:
        if os.environ.get("CONTAINER_IMAGES"):
            pytest.fail(f"{tag} was asked for but is not built")
        pytest.skip(f"{tag} is not built (make image-{name})")
    return tag
