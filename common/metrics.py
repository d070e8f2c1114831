"""Metric lines in the first-party grammar, and the regexes derived from the same templates.

Q1 `#quality_metric: host=<h>, <split> <metric> <kind>=<v>`, Q2 adds `epoch=<e>, `,
T1 `#test_score (<h>) : ('<metric>', <v>)`, plus progress and throughput lines
(docs/contract.md, "Metric lines"). The regex of a definition is built from the template that prints it.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from common.progress import sig3

LOSS, SCORE = "<loss>", "<score>"
_VALUE = "(\\S+)"


@dataclass(frozen=True)
class MetricDefinition:
    """One published metric, e.g. `test:msd` printed as `test msd <loss>=...`."""

    name: str                 # as users see it in HPO: "test:msd"
    token: str = ""           # the word in the line, when it differs from the name's metric part
    maximize: bool = False
    tunable: bool = False
    style: str = "quality"    # "quality" (Q1) or "test_score" (T1)

    @property
    def split(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def metric(self) -> str:
        return self.token or self.name.split(":", 1)[1]

    @property
    def kind(self) -> str:
        return SCORE if self.maximize else LOSS

    def template(self, epoch: bool = False) -> str:
        if self.style == "test_score":
            return "#test_score ({host}) : ('" + self.metric + "', {value})"
        prefix = "#quality_metric: host={host}, " + ("epoch={epoch}, " if epoch else "")
        return prefix + f"{self.split} {self.metric} {self.kind}=" + "{value}"

    def line(self, host: str, value: float, epoch: int | None = None) -> str:
        return self.template(epoch is not None).format(host=host, value=format_value(value), epoch=epoch)

    @property
    def regex(self) -> str:
        return template_regex(self.template())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Name": self.name, "Regex": self.regex}
        if self.tunable:
            out["Type"] = "Maximize" if self.maximize else "Minimize"
        return out


def _escape(text: str) -> str:
    """Escape only what regex syntax needs, so `#quality_metric: host=` stays readable."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


_SPECIAL = set(".^$*+?{}[]\\|()")


PROGRESS_TEMPLATE = "#progress_metric: host={host}, completed {value} % of epochs"
THROUGHPUT_TEMPLATE = "#throughput_metric: host={host}, train throughput={value} records/second"


def template_regex(template: str) -> str:
    """`{host}` matches any host, `{value}` captures the number; the rest is literal."""
    pieces = re.split(r"(\{host\}|\{value\}|\{epoch\})", template)
    out = []
    for piece in pieces:
        if piece == "{host}":
            out.append("\\S+")
        elif piece == "{value}":
            out.append(_VALUE)
        elif piece == "{epoch}":
            out.append("\\S+")
        else:
            out.append(_escape(piece))
    return "".join(out)


PROGRESS = {"Name": "train:progress", "Regex": template_regex(PROGRESS_TEMPLATE)}
THROUGHPUT = {"Name": "train:throughput", "Regex": template_regex(THROUGHPUT_TEMPLATE)}


def format_value(value: float) -> str:
    """Shortest round-trip text, no whitespace."""
    return repr(float(value))


class MetricsEmitter:
    """Prints metric lines to stdout, flushed, with the first-party log prefix."""

    def __init__(self, host: str, stream: TextIO | None = None) -> None:
        self.host = host
        self.stream = stream

    def _print(self, text: str) -> None:
        stream = self.stream or sys.stdout
        stamp = time.strftime("%m/%d/%Y %H:%M:%S")
        stream.write(f"[{stamp} INFO] {text}\n")
        stream.flush()

    def emit(self, definition: MetricDefinition, value: float, epoch: int | None = None) -> None:
        if not math.isfinite(value):
            return  # never nan/inf in a metric line (docs/contract.md, "Metric lines")
        self._print(definition.line(self.host, value, epoch))

    def progress(self, percent: float) -> None:
        """`completed 33.3 % of epochs`: one decimal."""
        self._print(PROGRESS_TEMPLATE.format(host=self.host, value=f"{percent:.1f}"))

    def throughput(self, records_per_second: float) -> None:
        """`train throughput=98300 records/second`: 3 significant figures, plain notation."""
        self._print(THROUGHPUT_TEMPLATE.format(host=self.host, value=sig3(records_per_second, separators=False)))
