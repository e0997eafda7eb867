"""Write fuzz/seeds_processor/: hand-made inputs for fuzz_processor.py (one per template and
app behaviour, pipelines, small limits, timeouts, the regression reproducers).

    python fuzz/make_seeds_processor.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fuzz_processor import TEMPLATES, encode  # noqa: E402

(
    GET,
    HEAD,
    POST,
    CHUNKED,
    EXPECT,
    CLOSE,
    V10,
    POST10,
    BIG,
    UPGRADE,
    CONNECT,
    OPTIONS,
    BROKEN,
    EXTRA,
) = range(14)
RAW = TEMPLATES
SMALL = [8, 8, 3, 3, 0, 0, 2, 1, 0, 0]  # line 48, headers 33 B / 4, body 100, drain 100, ...
TINY_TIMEOUTS = [255, 255, 15, 7, 3, 3, 5, 1, 0, 0]


def seeds() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for t in range(TEMPLATES):
        out[f"template-{t:02d}"] = encode(items=[(t, 3, b"")])
        out[f"template-{t:02d}-eof-split"] = encode(flags=1, items=[(t, 42, b"")], cuts=[5, 30])
    for b in range(16):
        out[f"behaviour-{b:02d}-post"] = encode(
            items=[(POST, 3, b""), (GET, 0, b"")], behaviours=[b | 0x20, 0x10]
        )
        out[f"behaviour-{b:02d}-chunked"] = encode(
            items=[(CHUNKED, 0x35, b""), (HEAD, 0, b"")], behaviours=[b | 0x50], cuts=[60, 61, 90]
        )
        out[f"behaviour-{b:02d}-pipeline"] = encode(
            items=[(GET, 0, b""), (POST, 4, b""), (EXPECT, 0x0B, b""), (GET, 9, b"")],
            behaviours=[0x11, b | 0x30, b, 0x20],
        )
    out["pipeline-8"] = encode(
        items=[(i % 12, i * 17, b"") for i in range(8)],
        behaviours=list(range(0, 128, 16)),
        cuts=[7, 100, 200],
    )
    out["expect-no-body"] = encode(items=[(EXPECT, 3, b"")], behaviours=[2])
    out["expect-body-ignored"] = encode(items=[(EXPECT, 0x0E, b""), (GET, 0, b"")], behaviours=[0])
    out["big-body-drain-limit"] = encode(
        items=[(POST, 7, b""), (GET, 0, b"")], behaviours=[0], cuts=[100, 5000]
    )
    out["small-limits"] = encode(
        limits=SMALL, items=[(BIG, 0x3F, b""), (POST, 4, b"")], behaviours=[2, 0]
    )
    out["small-limits-drain"] = encode(
        limits=SMALL, items=[(POST, 4, b""), (CHUNKED, 0x0F, b"")], behaviours=[0, 4]
    )
    out["timeout-partial-head"] = encode(advance=5, items=[(RAW, 0, b"GET / HTTP/1.1\r\nHo")])
    out["timeout-keep-alive"] = encode(advance=6, items=[(GET, 0, b"")])
    out["timeout-body"] = encode(
        advance=4,
        items=[(RAW, 0, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc")],
        behaviours=[2],
    )
    out["timeout-small"] = encode(
        flags=8 | 1,
        limits=TINY_TIMEOUTS,
        advance=3,
        items=[(POST, 3, b""), (RAW, 0, b"GET /x HTTP/1.1\r\n")],
        behaviours=[0],
    )
    out["raw-garbage-after-get"] = encode(items=[(GET, 0, b""), (RAW, 0, b"\x00\x01 junk\r\n\r\n")])
    out["mutated-pipeline"] = encode(
        items=[(GET, 0, b""), (POST, 3, b""), (GET, 1, b"")],
        mutations=[(20, ord(":")), (60, 0)],
        behaviours=[0, 2],
    )
    out["http10-close-delimited-stream"] = encode(
        items=[(V10, 0, b""), (GET, 0, b"")], behaviours=[0x35]
    )
    out["upgrade-declined-then-get"] = encode(items=[(UPGRADE, 0, b""), (GET, 0, b"")])
    out["connect-then-get"] = encode(items=[(CONNECT, 0, b""), (GET, 0, b"")])
    out["headers-invalid"] = encode(items=[(GET, 0, b"")] * 4, behaviours=[0x17, 0x27, 0x57, 0xF7])
    out["tail-raw"] = encode(items=[(GET, 0, b"")], tail=b"GET /tail HTTP/1.1\r\nHost: a\r\n\r\n")
    # Regressions (fuzz/README.md): a stream finished inside the parse of held input.
    out["regress-stream-sync-reparse"] = encode(
        items=[(OPTIONS, 0, b""), (EXTRA, 1, b""), (GET, 0, b"")], behaviours=[0x18, 0x26, 0]
    )
    return out


def main() -> None:
    target = HERE / "seeds_processor"
    target.mkdir(exist_ok=True)
    for name, data in seeds().items():
        (target / f"{name}.bin").write_bytes(data)
    print(f"{len(seeds())} seeds in {target}")


if __name__ == "__main__":
    main()
