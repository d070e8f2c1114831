"""Progress of long loops for someone reading the log: done/total, rate, elapsed and ETA, at most one line
every SM_PROGRESS_INTERVAL_S seconds (10 by default), e.g.

    epoch 2/5: 420,000/1,000,000 rows (42.0 %), 98,300 rows/s, elapsed 4.27 s, ETA 5.90 s

and, from `finish()`, a summary: `epoch 2/5: 1,000,000 rows in 10.2 s, 98,000 rows/s`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

INTERVAL_ENV = "SM_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 10.0


def interval_s() -> float:
    """Seconds between progress lines: SM_PROGRESS_INTERVAL_S when it is a number >= 0, else 10."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, ""))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL_S


def significant(value: float, figures: int = 3) -> float:
    """`value` rounded to `figures` significant figures."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, figures - 1 - math.floor(math.log10(abs(value))))


def sig3(value: float, separators: bool = True) -> str:
    """3 significant figures in plain notation: `98,300`, `4.27`, `0.0123` (`98300` without separators)."""
    rounded = significant(value)
    if rounded == 0 or not math.isfinite(rounded):
        return "0" if rounded == 0 else str(rounded)
    decimals = max(0, 2 - math.floor(math.log10(abs(rounded))))  # again after rounding: 9.996 -> 10.0
    return f"{rounded:,.{decimals}f}" if separators else f"{rounded:.{decimals}f}"


def duration(seconds: float) -> str:
    """`4.27 s`, `12 min 5 s`, `2 h 3 min`."""
    if seconds < 59.95:
        return f"{sig3(max(seconds, 0.0))} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


class Progress:
    """Counts what a loop has done; `advance` logs a progress line when `interval` seconds have passed since
    the last one (or the start), so a loop shorter than that logs nothing until `finish`.

    `total` None: not known yet (the first pass over a stream), so no percentage or ETA. `start`: units already
    done before this run (a resumed job); the rate counts only this run's.
    """

    def __init__(self, what: str, total: int | None = None, unit: str = "rows", start: int = 0,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.start = self.done = start
        self.interval = interval_s() if interval is None else interval
        self.clock = clock
        self.started = self.last_line = clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last_line >= self.interval:
            self.last_line = now
            log.info("%s", self.line(now - self.started))

    def line(self, elapsed: float) -> str:
        parts = [f"{self.done:,} {self.unit}"]
        if self.total:
            parts = [f"{self.done:,}/{self.total:,} {self.unit} ({100.0 * self.done / self.total:.1f} %)"]
        rate = self._rate(elapsed)
        if rate:
            parts.append(self._speed(rate))
        parts.append(f"elapsed {duration(elapsed)}")
        if self.total and rate:
            parts.append(f"ETA {duration(max(self.total - self.done, 0) / rate)}")
        return f"{self.what}: " + ", ".join(parts)

    def finish(self) -> float:
        """Log the summary line; the seconds since the start."""
        elapsed = self.elapsed
        summary = f"{self.what}: {self.done - self.start:,} {self.unit} in {duration(elapsed)}"
        rate = self._rate(elapsed)
        log.info("%s", summary + (f", {self._speed(rate)}" if rate else ""))
        return elapsed

    def _rate(self, elapsed: float) -> float:
        return (self.done - self.start) / elapsed if elapsed > 0 else 0.0

    def _speed(self, rate: float) -> str:
        """`98,300 rows/s`; below one a second, the time each takes: `8.12 s each`."""
        return f"{sig3(rate)} {self.unit}/s" if rate >= 1 else f"{duration(1 / rate)} each"
