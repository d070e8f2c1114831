"""Every shell block of README.md runs as written, in a copy of the working tree (what a fresh clone holds).

The blocks run in order in one copy, with the repository's `.venv` linked in and kept off PATH (a new user
has not activated it), so a block may use what an earlier one made: data from `sm-local sample-data`, a
model from `sm-local train`. A block is left out only when the line before it says why:
`<!-- readme-test: skip: REASON -->` (image builds, servers that run until stopped, AWS, root).

The copy lives in build/readme-test/ and is brought up to date each run rather than made anew: numba caches
its compiled kernels next to their sources, keyed by path, and compiling them all again takes a minute.
Whatever the blocks write (build/ inside the copy) is removed before they run.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CLONE = REPO / "build" / "readme-test" / "clone"
SHELLS = {"sh", "bash"}
FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = re.compile(r"^<!-- readme-test: skip: (\S.*\S) -->$")
BLOCK_TIMEOUT_S = 300
# What the test's own runner may have set that a user's shell would not have.
RUNNER_VARIABLES = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"}


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    script: str
    skip: str  # why it is not run, or ""


def shell_blocks(markdown: str) -> list[Block]:
    lines, blocks, index = markdown.splitlines(), [], 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith("```")), None)
        assert end is not None, f"README.md line {index + 1}: a code block that is never closed"
        if fence.group(1) in SHELLS:
            skip = SKIP.match(lines[index - 1].strip()) if index else None
            blocks.append(Block(index + 1, "\n".join(lines[index + 1:end]), skip.group(1) if skip else ""))
        index = end + 1
    return blocks


BLOCKS = shell_blocks(README.read_text())


def test_every_annotation_is_a_skip_with_a_reason_before_a_shell_block() -> None:
    lines = README.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if "readme-test" in line:
            assert SKIP.match(line.strip()), f"README.md line {number}: not `<!-- readme-test: skip: REASON -->`"
            following = FENCE.match(lines[number]) if number < len(lines) else None
            assert following and following.group(1) in SHELLS, \
                f"README.md line {number}: the annotation must come right before a ```sh or ```bash block"


def test_the_readme_makes_the_data_it_trains_on() -> None:
    run = "\n".join(block.script for block in BLOCKS if not block.skip)
    for path in re.findall(r"--channel \w+=(\S+)", run):
        made = re.search(rf"(sample-data \w+|shingle \S+|>) {re.escape(path)}\b", run)
        # a transform's answers: --output DIR writes DIR/<input file name>.out
        folder, _, name = path.rpartition("/")
        transformed = name.endswith(".out") and re.search(rf"--output {re.escape(folder)}\b", run)
        assert made or transformed, f"README.md trains on {path}, which no block that runs makes"


def clone_files() -> set[str]:
    """What a fresh clone would hold: the tracked and new files that are not ignored."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                                capture_output=True, check=True, timeout=60).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout, so no list of a clone's files: {exc}")
    return {name for name in listed.split("\0") if name and (REPO / name).is_file()}  # not those deleted since


def sync_clone(names: set[str]) -> None:
    """Make CLONE hold exactly `names`, as in the repository, and the .venv link; keep __pycache__ folders."""
    shutil.rmtree(CLONE / "build", ignore_errors=True)
    for folder, subfolders, files in os.walk(CLONE, topdown=False):
        here = Path(folder)
        if "__pycache__" in here.relative_to(CLONE).parts:
            continue
        for name in files + [d for d in subfolders if (here / d).is_symlink()]:
            relative = (here / name).relative_to(CLONE).as_posix()
            if relative not in names and relative != ".venv":
                (here / name).unlink()
        if here != CLONE and not any(here.iterdir()):
            here.rmdir()
    for name in names:
        source, target = REPO / name, CLONE / name
        if not target.is_file() or _stamp(target) != _stamp(source):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)  # keeps mtimes: make sees .venv as up to date, as in the repository
    if not (CLONE / ".venv").is_symlink():
        (CLONE / ".venv").symlink_to(REPO / ".venv")


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@pytest.fixture(scope="module")
def clone() -> Iterator[Path]:
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv in the repository: run make install first")
    names = clone_files()
    CLONE.mkdir(parents=True, exist_ok=True)
    with open(CLONE.parent / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one run at a time uses the copy
        sync_clone(names)
        yield CLONE


def user_environment() -> dict[str, str]:
    venv_bin = (REPO / ".venv" / "bin").resolve()
    path = [entry for entry in os.environ.get("PATH", "").split(os.pathsep)
            if entry and Path(entry).resolve() != venv_bin]
    env = {name: value for name, value in os.environ.items() if name not in RUNNER_VARIABLES}
    return {**env, "PATH": os.pathsep.join(path)}


RESULTS: dict[int, subprocess.CompletedProcess] = {}


def run_through(block: Block, root: Path) -> subprocess.CompletedProcess:
    """Run every block up to and including `block` that has not run yet, in order; `block`'s result."""
    for earlier in BLOCKS:
        if not earlier.skip and earlier.line not in RESULTS:
            RESULTS[earlier.line] = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", earlier.script], cwd=root,
                                                   env=user_environment(), capture_output=True, text=True,
                                                   timeout=BLOCK_TIMEOUT_S)
        if earlier == block:
            break
    return RESULTS[block.line]


def _report(block: Block, result: subprocess.CompletedProcess) -> str:
    failed_before = [line for line, earlier in RESULTS.items() if line < block.line and earlier.returncode]
    return (f"README.md line {block.line}: exit status {result.returncode}"
            + (f" (the blocks at lines {failed_before} failed before it)" if failed_before else "")
            + f"\n{block.script}\n--- stdout, the end:\n{result.stdout[-3000:]}\n--- stderr, the end:\n"
            + result.stderr[-3000:])


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("block", BLOCKS, ids=[f"line-{block.line}" for block in BLOCKS])
def test_shell_block_runs_as_written(block: Block, clone: Path) -> None:
    if block.skip:
        pytest.skip(block.skip)
    result = run_through(block, clone)
    assert result.returncode == 0, _report(block, result)
