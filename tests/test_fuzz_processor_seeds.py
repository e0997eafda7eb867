"""Replay fuzz/seeds_processor/ through fuzz/fuzz_processor.py's checks (see fuzz/README.md).

On a release build the allocation counters are empty, so only the other checks apply.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import fuzz_parser  # noqa: E402
import fuzz_processor  # noqa: E402

SEEDS = sorted((FUZZ / "seeds_processor").glob("*.bin"))


@pytest.mark.parametrize("path", SEEDS, ids=[p.stem for p in SEEDS])
def test_seed(path: Path) -> None:
    fuzz_processor.check_input(path.read_bytes())


def test_encode_decode_round_trip() -> None:
    data = fuzz_processor.encode(
        flags=1,
        limits=[1] * fuzz_processor.LIMIT_BYTES,
        advance=2,
        items=[(2, 3, b""), (fuzz_processor.TEMPLATES, 0, b"RAW")],
        mutations=[(7, 65)],
        behaviours=[5, 0x12],
        cuts=[3, 9],
        tail=b"TAIL",
    )
    case = fuzz_processor.decode_case(fuzz_parser.PyDataProvider(data))
    assert case.send_eof and case.limits is not None
    assert case.advance == fuzz_processor.ADVANCE_SECONDS[2]
    assert case.behaviours == [5, 0x12]
    assert case.stream.endswith(b"RAWTAIL") and case.stream[7] == 65
    assert case.cuts == (3, 9)
