"""Every reader, `parse` and `batches`, on random and structure-aware malformed bodies (hypothesis).

The only allowed outcomes are a consistent Batch (float32, rows x width, CSV and JSON Lines one row per
non-blank line, libsvm and CSV labels as declared, CSR that passes scipy's full check, `batches` on small
chunks giving what `parse` gives) or a UserError with a message and a 4xx status. Each body runs in a child
process (isolation.py), so a crash in a numba kernel fails the example instead of ending the run.
"""

from __future__ import annotations

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.fuzz import bodies
from tests.fuzz.checks import check_reader
from tests.fuzz.isolation import Isolated

# (reader kind, option): CSV's label_size, libsvm's labelled
READERS = [("csv", 0), ("csv", 1), ("json", 0), ("jsonlines", 0), ("recordio", 0), ("libsvm", 0), ("libsvm", 1)]
IDS = [f"{kind}-{option}" for kind, option in READERS]
ALPHABETS = {
    "csv": "0123456789,.-+eE \t\r\nnaif",
    "json": '0123456789,.-eE []{}":\n',
    "jsonlines": '0123456789,.-eE []{}":\n',
    "recordio": None,
    "libsvm": "0123456789:.-+eE \t\r\nqid#",
}


def _judge(isolated: Isolated, kind: str, option: int, body: bytes, chunk: int, batch_rows: int) -> None:
    chunk = max(chunk, len(body) // 32)  # a small chunk size, but no quadratic re-scan of large bodies
    outcome = isolated.call(check_reader, kind, option, body, chunk, batch_rows)
    event(f"{kind}: {outcome[0]}")
    assert outcome[0] in ("ok", "user_error"), outcome


def _mutant(kind: str, option: int):
    def build(args: tuple) -> bytes:
        rng, width, ints = args
        extra = (bool(option),) if kind == "libsvm" else (ints,)
        source = bodies.MUTANT[kind] if rng.random() < 0.7 else bodies.VALID[kind]
        out = source(rng, width, *extra)
        return bodies.byte_mutant(rng, out) if rng.random() < 0.3 else out

    ints = st.sampled_from([(), (0,), (1,)])
    return st.tuples(st.randoms(use_true_random=False), st.integers(1, 8), ints).map(build)


def _raw(kind: str):
    alphabet = ALPHABETS[kind]
    raw = st.binary(max_size=600)
    if alphabet is None:
        return raw
    text = st.text(alphabet=alphabet, max_size=600).map(str.encode)
    return st.one_of(raw, text)


CHUNKS = st.sampled_from([1, 2, 3, 5, 8, 13, 64, 1000, 1 << 20])
BATCH_ROWS = st.sampled_from([1, 2, 3, 7, 1000])


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("kind", "option"), READERS, ids=IDS)
@given(data=st.data())
def test_structured_mutants(isolated: Isolated, kind: str, option: int, data: st.DataObject) -> None:
    body = data.draw(_mutant(kind, option), label="body")
    _judge(isolated, kind, option, body, data.draw(CHUNKS, label="chunk"), data.draw(BATCH_ROWS, label="rows"))


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("kind", "option"), READERS, ids=IDS)
@given(data=st.data())
def test_random_bytes(isolated: Isolated, kind: str, option: int, data: st.DataObject) -> None:
    body = data.draw(_raw(kind), label="body")
    _judge(isolated, kind, option, body, data.draw(CHUNKS, label="chunk"), data.draw(BATCH_ROWS, label="rows"))
