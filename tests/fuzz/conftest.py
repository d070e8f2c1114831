"""The fuzz suite's settings: `make fuzz` (outside `make test`).

FUZZ_EXAMPLES: hypothesis examples per reader/encoder test (default 2000).
FUZZ_BODIES: malformed bodies per image and content type sent to the real servers (default 10000).
FUZZ_REPORT: where the server table is written as JSON (default /tmp/fuzz-report.json).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.isolation import Isolated

settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.load_profile("fuzz")

SERVER_RESULTS: list[dict] = []  # rows of the server table, filled by test_fuzz_servers.py


@pytest.fixture(scope="session")
def isolated() -> Iterator[Isolated]:
    """One child process for the whole session (restarted after a crash)."""
    with Isolated(timeout=30) as child:
        yield child


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SERVER_RESULTS:
        return
    from tests.fuzz.report import table

    terminalreporter.write_sep("=", "fuzzing the servers")
    terminalreporter.write_line(table(SERVER_RESULTS))
