"""The progress reporter: rate-limited lines, ETA, 3 significant figures."""

from __future__ import annotations

import logging

import pytest

from common.progress import Progress, duration, interval_s, sig3, significant


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "common.progress"]


@pytest.mark.parametrize("value, text", [
    (98312.7, "98,300"), (4.2712, "4.27"), (0.012345, "0.0123"), (9.996, "10.0"), (999.6, "1,000"),
    (1234567, "1,230,000"), (0.5, "0.500"), (100, "100"), (0, "0"),
])
def test_three_significant_figures(value: float, text: str) -> None:
    assert sig3(value) == text
    assert sig3(value, separators=False) == text.replace(",", "")
    assert float(text.replace(",", "")) == significant(value)


def test_durations() -> None:
    assert [duration(s) for s in (0.00123, 4.271, 59.9, 61.2, 754, 7384)] == [
        "0.00123 s", "4.27 s", "59.9 s", "1 min 1 s", "12 min 34 s", "2 h 3 min"]


def test_lines_at_most_every_interval_with_rate_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = Progress("epoch 2/5", 1_000_000, "rows", interval=10, clock=clock)
    for _ in range(8):  # 50,000 rows a second
        clock.now += 1.0
        progress.advance(50_000)
    assert progress_lines(caplog) == []
    clock.now += 2.0
    progress.advance(100_000)
    clock.now += 1.0
    progress.advance(50_000)  # 1 s after the line: too soon for another
    assert progress_lines(caplog) == [
        "epoch 2/5: 500,000/1,000,000 rows (50.0 %), 50,000 rows/s, elapsed 10.0 s, ETA 10.0 s"]
    clock.now += 9.0
    progress.advance(300_000)
    assert progress_lines(caplog)[-1] == (
        "epoch 2/5: 850,000/1,000,000 rows (85.0 %), 42,500 rows/s, elapsed 20.0 s, ETA 3.53 s")
    clock.now += 3.0
    assert progress.finish() == pytest.approx(23.0)
    assert progress_lines(caplog)[-1] == "epoch 2/5: 850,000 rows in 23.0 s, 37,000 rows/s"


def test_a_short_loop_logs_only_its_summary(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = Progress("boosting", 100, "rounds", interval=10, clock=clock)
    for _ in range(100):
        clock.now += 0.05
        progress.advance()
    assert progress_lines(caplog) == []
    progress.finish()
    assert progress_lines(caplog) == ["boosting: 100 rounds in 5.00 s, 20.0 rounds/s"]


def test_unknown_total_resumed_start_and_slow_units(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    rows = Progress("sampling", interval=0, clock=clock)
    clock.now += 2.0
    rows.advance(1234)
    assert progress_lines(caplog)[-1] == "sampling: 1,234 rows, 617 rows/s, elapsed 2.00 s"  # no percentage, no ETA
    epochs = Progress("training", 10, "epochs", start=4, interval=0, clock=clock)
    clock.now += 16.0
    epochs.advance(2)  # two epochs of this run, after the four a checkpoint held
    assert progress_lines(caplog)[-1] == "training: 6/10 epochs (60.0 %), 8.00 s each, elapsed 16.0 s, ETA 32.0 s"
    epochs.finish()
    assert progress_lines(caplog)[-1] == "training: 2 epochs in 16.0 s, 8.00 s each"


def test_nothing_done_has_no_rate_or_eta(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = Progress("pass 1/1", 10, interval=0, clock=clock)
    progress.advance(0)
    progress.finish()
    assert progress_lines(caplog) == ["pass 1/1: 0/10 rows (0.0 %), elapsed 0 s", "pass 1/1: 0 rows in 0 s"]


def test_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_PROGRESS_INTERVAL_S", raising=False)
    assert interval_s() == 10.0
    for text, expected in (("0", 0.0), ("2.5", 2.5), ("-1", 10.0), ("soon", 10.0), ("nan", 10.0)):
        monkeypatch.setenv("SM_PROGRESS_INTERVAL_S", text)
        assert interval_s() == expected
    monkeypatch.setenv("SM_PROGRESS_INTERVAL_S", "0")
    assert Progress("x").interval == 0.0
