"""Shared fixtures: every algorithm package, and a fresh /opt/ml tree per test."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def algorithm_names() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "algorithms").glob("*/__init__.py"))


def all_algorithms() -> list[type]:
    return [importlib.import_module(f"algorithms.{name}").ALGORITHM for name in algorithm_names()]


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    base = tmp_path / "opt_ml"
    base.mkdir()
    return base
