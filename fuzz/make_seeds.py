"""Generate fuzz/seeds/ from the conformance corpora in tests/corpora/.

    python fuzz/make_seeds.py [--corpora DIR] [--out fuzz/seeds]

Deterministic: the same corpora give the same files. Each seed is a fuzzer input in the layout
of fuzz_parser.py (HTTP bytes followed by control bytes), made with encode_case():

- up to two small cases of each llhttp test file, accepted and rejected ones apart, with a
  Host header added where they have none;
- up to two small cases of each Http11Probe (category, expected outcome) group, six for the
  smuggling category;
- a few hand-made requests for paths the corpora miss (pipelining, trailers, a declined
  upgrade followed by another request, the body limit set after the head, small limits);
- regress-<name>.bin: minimal reproducers of parser bugs the fuzzer found, fixed since.

Most seeds are fed whole with feed_eof(); every third is also cut in two or three pieces.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_parser import FuzzCase, encode_case

ROOT = Path(__file__).resolve().parent.parent
MAX_SEED = 1024  # bytes of HTTP per corpus seed
PER_GROUP = 2

SMALL = {
    "max_request_line_size": 32,
    "max_request_headers_size": 64,
    "max_request_headers": 4,
    "max_request_body_size": 16,
    "max_chunk_extensions_size": 8,
}

HANDMADE: dict[str, FuzzCase] = {
    "pipeline-3": FuzzCase(
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n",
        cuts=(20, 61, 90),
    ),
    "chunked-trailers-ext": FuzzCase(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'A;name=value;q="a b"\r\n0123456789\r\n0;last\r\nX-Sum: 1\r\nX-Other: two\r\n\r\n',
    ),
    "chunked-plain-trailers": FuzzCase(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nExpires: never\r\n\r\n",
        cuts=(60, 66),
    ),
    "upgrade-declined": FuzzCase(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        resume_upgrades=True,
    ),
    "connect-tunnel": FuzzCase(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01"
    ),
    "connect-content-length": FuzzCase(
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 3\r\n\r\nabc"
    ),
    "http10-keep-alive": FuzzCase(
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n"
    ),
    "expect-continue": FuzzCase(
        b"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata",
        feed_eof=False,
    ),
    "body-limit-after-head": FuzzCase(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n",
        body_limit_after_head=10,
    ),
    "small-limits-chunked": FuzzCase(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;a=b\r\nabcd\r\n0\r\n\r\n",
        limits=SMALL,
    ),
    "small-limits-headers": FuzzCase(
        b"GET /some/longer/path HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
        limits=SMALL,
        cuts=(10, 40),
    ),
    "empty-lines-then-request": FuzzCase(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    "absolute-and-asterisk": FuzzCase(
        b"GET http://h/x?y HTTP/1.1\r\nHost: h\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"
    ),
}

# Each one's rejection reason used to depend on how the line was cut: a complete line was
# checked for CRLF, then size, then content, while a partial line was refused early for size,
# bare CR or obs-fold. The comments give the reason the parser must report either way.
REGRESSIONS: dict[str, FuzzCase] = {
    # A bare CR in a header line that fits the size limit: 400 INVALID_LINE_ENDING (was 431
    # fed whole, because the failed line had already been added to the section size).
    "split-reason-bare-cr-under-limit": FuzzCase(
        b"GET / HTTP/1.1\r\nA: b\r" + b"c" * 18 + b"\r\n\r\n",
        cuts=(22,),
        feed_eof=False,
        limits={**SMALL, "max_request_headers_size": 32},
    ),
    # 414 REQUEST_LINE_TOO_LONG, also when the line ends in a bare LF (was 400
    # INVALID_LINE_ENDING fed whole).
    "split-reason-line-too-long": FuzzCase(
        b"GET /" + b"a" * 16 + b" HTTP/1.1\n",
        cuts=(1,),
        limits={**SMALL, "max_request_line_size": 16},
    ),
    # A bare CR in a header line when max_request_headers=0: 431 TOO_MANY_HEADERS (was 400
    # INVALID_LINE_ENDING when the line arrived in two parts).
    "split-reason-bare-cr": FuzzCase(
        b"GET / HTTP/1.1\r\nHost: h\rX\r\n\r\n",
        cuts=(25,),
        limits={**SMALL, "max_request_headers": 0},
    ),
    # A header line starting with SP and ending in a bare LF: 400 OBSOLETE_LINE_FOLDING (was
    # 400 INVALID_LINE_ENDING fed whole).
    "split-reason-obs-fold": FuzzCase(b"GET / HTTP/1.1\r\nHost: h\r\n X\n\r\n", cuts=(27,)),
    # An unfinished chunk-size line of 18 zeros (too many digits) then ";a", with
    # max_chunk_extensions_size=0: 400 INVALID_CHUNK_SIZE (was 400 CHUNK_EXTENSIONS_TOO_LARGE
    # fed whole).
    "split-reason-chunk-size": FuzzCase(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 18 + b";a",
        cuts=(74,),
        feed_eof=False,
        limits={**SMALL, "max_chunk_extensions_size": 0},
    ),
    # A chunk-size line "4;" + 20 NULs + "a=b" with max_chunk_extensions_size=8: 400
    # CHUNK_EXTENSIONS_TOO_LARGE (was 400 INVALID_CHUNK_EXTENSION fed whole).
    "split-reason-chunk-ext": FuzzCase(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4;"
        + b"\0" * 20
        + b"a=b\r\nabcd\r\n0\r\n\r\n",
        cuts=(78,),
        limits=SMALL,
    ),
}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60]


def _variant(index: int, payload: bytes) -> FuzzCase:
    """Whole with EOF; every third seed cut in pieces, every fifth without EOF."""
    cuts: tuple[int, ...] = ()
    if index % 3 == 0 and len(payload) > 3:
        cuts = tuple(sorted({len(payload) // 3, len(payload) // 2, len(payload) - 1}))
    return FuzzCase(payload, cuts=cuts, feed_eof=index % 5 != 4)


def build(corpora: Path) -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    index = 0

    llhttp = json.loads((corpora / "llhttp_request_cases.json").read_text())
    groups: dict[tuple[str, bool], int] = {}
    for case in llhttp:
        data = case["raw_latin1"].encode("latin-1")
        key = (case["src"].split()[1].split(":")[0], case["llhttp_error"] is None)
        if len(data) > MAX_SEED or groups.get(key, 0) >= PER_GROUP:
            continue
        groups[key] = groups.get(key, 0) + 1
        if b"\nhost:" not in data.lower() and b"\r\n" in data:
            # Most llhttp cases have no Host, which would stop every HTTP/1.1 one at 400.
            data = data.replace(b"\r\n", b"\r\nHost: a\r\n", 1)
        name = f"llhttp-{_slug(Path(key[0]).stem)}-{_slug(case['name'])}"
        seeds[name] = encode_case(_variant(index, data))
        index += 1

    probe = json.loads((corpora / "http11probe_cases.json").read_text())["cases"]
    groups2: dict[tuple[str, str], int] = {}
    for case in probe:
        data = case["raw_request"].encode("latin-1")
        key2 = (case["category"], case["expected"])
        cap = 6 if case["category"] == "Smuggling" else PER_GROUP
        if not data or len(data) > MAX_SEED or groups2.get(key2, 0) >= cap:
            continue
        groups2[key2] = groups2.get(key2, 0) + 1
        seeds[f"probe-{_slug(case['id'])}"] = encode_case(_variant(index, data))
        index += 1

    for name, fuzz_case in HANDMADE.items():
        seeds[f"hand-{name}"] = encode_case(fuzz_case)
    for name, fuzz_case in REGRESSIONS.items():
        seeds[f"regress-{name}"] = encode_case(fuzz_case)
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=ROOT / "tests" / "corpora")
    parser.add_argument("--out", type=Path, default=ROOT / "fuzz" / "seeds")
    args = parser.parse_args()
    seeds = build(args.corpora)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.bin"):
        old.unlink()
    for name, data in sorted(seeds.items()):
        (args.out / f"{name}.bin").write_bytes(data)
    total = sum(len(d) for d in seeds.values())
    print(f"{len(seeds)} seeds, {total} bytes in {args.out}")


if __name__ == "__main__":
    main()
