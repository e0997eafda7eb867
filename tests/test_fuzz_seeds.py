"""Replay fuzz/seeds/ through the fuzz harness's checks, so CI exercises its invariants.

No atheris needed: fuzz_parser decodes inputs with PyDataProvider, a pure-Python copy of the
FuzzedDataProvider methods it uses (checked against atheris when atheris is installed).
"""

from __future__ import annotations

import random
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from kestrel._core import RejectReason, RequestHead

FUZZ_DIR = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ_DIR))

import fuzz_parser  # noqa: E402
from fuzz_parser import (  # noqa: E402
    InvariantViolation,
    PyDataProvider,
    check_case,
    check_input,
    decode_case,
    encode_case,
)

SEEDS = sorted((FUZZ_DIR / "seeds").glob("*.bin"))
SEED_IDS = [p.stem for p in SEEDS]


def test_seed_corpus_is_there() -> None:
    assert len(SEEDS) >= 24
    assert sum(p.stat().st_size for p in SEEDS) < 200_000


@pytest.mark.parametrize("path", SEEDS, ids=SEED_IDS)
def test_seed(path: Path) -> None:
    """Each seed as the fuzzer runs it."""
    check_input(path.read_bytes())


@pytest.mark.parametrize("path", SEEDS, ids=SEED_IDS)
def test_seed_at_every_split(path: Path) -> None:
    """Each seed cut in two at every offset, and fed a byte at a time (as llhttp's tests do)."""
    case = decode_case(PyDataProvider(path.read_bytes()))
    n = len(case.payload)
    for cut in range(1, n):
        check_case(replace(case, cuts=(cut,)))
    check_case(replace(case, cuts=tuple(range(1, n))[: fuzz_parser.MAX_CUTS]))
    # Byte at a time: more pieces than an input can ask for, so call check_case's parts.
    whole = fuzz_parser.Run(case, fuzz_parser._no_feedback).run([case.payload])
    split = fuzz_parser.Run(case, fuzz_parser._no_feedback).run(
        [case.payload[i : i + 1] for i in range(n)]
    )
    assert fuzz_parser._same_decision(whole, split), (whole.final, split.final)


@pytest.mark.parametrize("path", SEEDS, ids=SEED_IDS)
def test_seed_encoding_round_trips(path: Path) -> None:
    data = path.read_bytes()
    assert encode_case(decode_case(PyDataProvider(data))) == data


def test_py_data_provider_matches_atheris() -> None:
    # atheris is in the test extras, so this always runs (a skip would hide a drift).
    import atheris

    rng = random.Random(20240521)
    inputs = [p.read_bytes() for p in SEEDS]
    inputs += [rng.randbytes(rng.randrange(0, 80)) for _ in range(2000)]
    for data in inputs:
        ours = decode_case(PyDataProvider(data))
        theirs = decode_case(atheris.FuzzedDataProvider(data))
        assert ours == theirs, data


def test_harness_catches_a_broken_invariant() -> None:
    """The checks are live: a tampered REJECT_STATUS must be reported."""
    seed = FUZZ_DIR / "seeds" / "probe-rfc9112-2-3-invalid-version.bin"  # rejected: 505
    data = seed.read_bytes()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fuzz_parser, "REJECT_STATUS", dict.fromkeys(RejectReason, 599))
        with pytest.raises(InvariantViolation, match="status"):
            check_input(data)


def _head(method: str, content_length: int, chunked: bool) -> RequestHead:
    fields = (b"host", b"a:1"), (b"content-length", b"3")
    return cast(
        RequestHead,
        SimpleNamespace(
            method=method,
            target=b"a:1",
            http_version="1.1",
            headers=list(fields),
            keep_alive=True,
            content_length=content_length,
            chunked=chunked,
            upgrade=method == "CONNECT",
            expect_continue=False,
        ),
    )


def test_harness_framing_of_connect() -> None:
    """CONNECT has no content whatever its Content-Length; any other method keeps it."""
    fuzz_parser._check_head(_head("CONNECT", -1, False))
    fuzz_parser._check_head(_head("POST", 3, False))
    for head in (_head("CONNECT", 3, False), _head("CONNECT", -1, True), _head("POST", -1, False)):
        with pytest.raises(InvariantViolation, match="content_length"):
            fuzz_parser._check_head(head)
