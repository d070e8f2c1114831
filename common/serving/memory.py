"""How much memory the container may use, how much this process holds, and giving freed memory back."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
from pathlib import Path

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
