"""Response encoders, Accept negotiation, metric lines and their regexes."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest

from common.data import content_types as ct
from common.data.columns import ResponseLayout
from common.data.content_types import MediaType, negotiate_accept
from common.data.registry import encode
from common.errors import UnsupportedAccept
from common.metrics import PROGRESS, THROUGHPUT, MetricDefinition, MetricsEmitter
from tests.conftest import all_algorithms

COLUMNS = {"closest_cluster": np.array([0, 1], np.float32),
           "distance_to_cluster": np.array([1.4142135, 1.0], np.float32)}


def test_json_envelope_floats_and_shortest_repr() -> None:
    assert json.loads(encode(COLUMNS, ct.JSON)) == {"predictions": [
        {"closest_cluster": 0.0, "distance_to_cluster": 1.4142135381698608},
        {"closest_cluster": 1.0, "distance_to_cluster": 1.0}]}
    assert encode(COLUMNS, ct.JSON).startswith(b'{"predictions": [{"closest_cluster": 0.0, ')


def test_jsonlines_csv_and_vector_columns() -> None:
    assert encode(COLUMNS, ct.JSONLINES) == (
        b'{"closest_cluster": 0.0, "distance_to_cluster": 1.4142135381698608}\n'
        b'{"closest_cluster": 1.0, "distance_to_cluster": 1.0}\n')
    assert encode(COLUMNS, ct.CSV) == b"0.0,1.4142135381698608\n1.0,1.0\n"
    projections = {"projection": np.array([[1.5, 2.0], [3.0, 4.25]], np.float32)}
    assert json.loads(encode(projections, ct.JSON, ResponseLayout(envelope="projections"))) == {
        "projections": [{"projection": [1.5, 2.0]}, {"projection": [3.0, 4.25]}]}
    assert encode(projections, ct.CSV) == b"1.5,2.0\n3.0,4.25\n"


def test_non_finite_values_never_reach_json() -> None:
    body = encode({"score": np.array([np.nan, 1.0])}, ct.JSON, ResponseLayout(envelope="scores"))
    assert json.loads(body) == {"scores": [{"score": None}, {"score": 1.0}]}


def test_accept_negotiation() -> None:
    supported = (ct.JSON, ct.JSONLINES, ct.RECORDIO, ct.CSV)
    assert negotiate_accept(None, supported, ct.JSON).name == ct.JSON
    assert negotiate_accept("*/*", supported, ct.JSON).name == ct.JSON
    assert negotiate_accept("application/JSONLINES", supported, ct.JSON).name == ct.JSONLINES
    assert negotiate_accept("text/html, text/csv", supported, ct.JSON).name == ct.CSV
    verbose = negotiate_accept("application/json; verbose=true", supported, ct.JSON)
    assert verbose.flag("verbose") and MediaType.parse("application/json;verbose").flag("verbose")
    with pytest.raises(UnsupportedAccept) as caught:
        negotiate_accept("text/html", supported, ct.JSON)
    assert caught.value.status == 406
    assert caught.value.message == ("Accept 'text/html' is not supported; use one of: application/json, "
                                    "application/jsonlines, application/x-recordio-protobuf, text/csv.")


def test_first_party_lines_and_published_regexes() -> None:
    msd = MetricDefinition("test:msd", tunable=True)
    assert msd.regex == r"#quality_metric: host=\S+, test msd <loss>=(\S+)"
    assert msd.line("algo-1", 0.0657) == "#quality_metric: host=algo-1, test msd <loss>=0.0657"
    assert msd.line("algo-1", 0.5, epoch=2) == "#quality_metric: host=algo-1, epoch=2, test msd <loss>=0.5"
    accuracy = MetricDefinition("test:accuracy", maximize=True, style="test_score")
    assert accuracy.line("algo-2", 0.98) == "#test_score (algo-2) : ('accuracy', 0.98)"
    assert PROGRESS["Regex"] == r"#progress_metric: host=\S+, completed (\S+) % of epochs"
    assert THROUGHPUT["Regex"] == r"#throughput_metric: host=\S+, train throughput=(\S+) records/second"


def test_emitter_skips_non_finite_and_prefixes_lines() -> None:
    out = io.StringIO()
    emitter = MetricsEmitter("algo-1", out)
    emitter.emit(MetricDefinition("test:msd"), float("nan"))
    emitter.emit(MetricDefinition("test:msd"), 1.25)
    emitter.progress(100.0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and re.match(r"^\[\d\d/\d\d/\d{4} \d\d:\d\d:\d\d INFO\] #quality_metric", lines[0])


@pytest.mark.parametrize("algorithm", all_algorithms(), ids=lambda a: a.name)
def test_every_published_regex_catches_its_own_line(algorithm: type) -> None:
    out = io.StringIO()
    emitter = MetricsEmitter("algo-1", out)
    for definition in algorithm.metrics:
        emitter.emit(definition, 0.125)
        assert re.search(definition.regex, out.getvalue().splitlines()[-1]).group(1) == "0.125"
    emitter.progress(100 / 3)
    emitter.throughput(1234.5)
    log = out.getvalue()
    assert re.search(PROGRESS["Regex"], log).group(1) == "33.3"  # one decimal
    assert re.search(THROUGHPUT["Regex"], log).group(1) == "1230"  # 3 significant figures
    described = algorithm.describe()
    assert {d["Name"] for d in described["metric_definitions"]} >= {m.name for m in algorithm.metrics}
    json.dumps(described)
