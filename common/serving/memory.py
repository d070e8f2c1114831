"""How much memory the container may use, how much this process holds, giving freed memory back, and the
multi-model endpoint's budget (`Limits`)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError
from common.serving.model_set import Record

MAX_MODELS_VAR, FRACTION_VAR = "SAGEMAKER_MAX_MODELS", "SAGEMAKER_MULTI_MODEL_MEMORY_FRACTION"
DEFAULT_FRACTION = 0.8
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def memory_limit_bytes() -> int:
    """The container's cgroup memory limit, or the machine's memory when there is none (or it is larger)."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in CGROUP_LIMITS:
        with contextlib.suppress(OSError, ValueError):
            limit = int(path.read_text().strip())  # "max" (cgroup v2, no limit) is a ValueError
            if 0 < limit < UNLIMITED:
                return min(limit, physical)
    return physical


def rss_bytes() -> int:
    """This process's resident memory (0 where /proc is not there)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def folder_bytes(folder: Path) -> int:
    """The files' sizes under `folder`, symbolic links not followed."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def release_memory() -> None:
    """Collect what the dropped objects left and hand free heap pages back to the system: glibc keeps
    freed small allocations in its arenas, so without the trim an unloaded model's memory stays resident."""
    gc.collect()
    _malloc_trim()


@dataclass(frozen=True)
class Limits:
    memory_bytes: int         # the budget for every worker's copies together
    max_models: int | None
    workers: int
    description: str          # how the budget came about, for the 507 message

    @classmethod
    def from_env(cls, workers: int) -> Limits:
        limit = memory_limit_bytes()
        fraction = _fraction(os.environ.get(FRACTION_VAR, ""))
        count = os.environ.get(MAX_MODELS_VAR, "").strip()
        return cls(int(limit * fraction), int(count) if count.isdigit() and int(count) > 0 else None, workers,
                   f"{fraction:g} of the container's {limit >> 20} MB, {FRACTION_VAR}")

    def check_count(self, name: str, loaded: int) -> None:
        if self.max_models is not None and loaded >= self.max_models:
            raise UserError(f"Cannot load model {name}: {loaded} models are loaded and {MAX_MODELS_VAR} is "
                            f"{self.max_models}; unload one first.", status=507)

    def check_memory(self, name: str, size: int, loaded: list[Record]) -> None:
        used = sum(record.size for record in loaded) * self.workers
        needed = size * self.workers
        if used + needed > self.memory_bytes:
            raise UserError(
                f"Cannot load model {name}: it needs about {megabytes(needed)} MB ({megabytes(size)} MB in each of "
                f"{self.workers} workers), and {megabytes(max(0, self.memory_bytes - used))} MB of the "
                f"{megabytes(self.memory_bytes)} MB budget ({self.description}) are free; unload models first.",
                status=507)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_FRACTION
    return value if 0 < value <= 1 else DEFAULT_FRACTION


def megabytes(size: int) -> str:
    return f"{size / (1 << 20):.1f}"
