"""Fixed inputs shared by the micro-benchmarks: the canned requests the parser is timed on.

Built once at import, never inside a timed function. (They were perf/bench_parser.py's;
RESULTS.md's parser figures before the micro-benchmarks were measured on the same bytes.)
"""

from __future__ import annotations


def _chunked(body: bytes, size: int) -> bytes:
    out = bytearray()
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


SMALL_GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

# What Chrome 124 on Linux sends for a navigation, trimmed to 12 header fields.
BROWSER_GET = (
    b"GET /articles/42?ref=home HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"\r\n'
    b'sec-ch-ua-platform: "Linux"\r\n'
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: sessionid=8f2k1q9xv0c3; theme=dark\r\n"
    b"\r\n"
)

_POST_BODY = (
    b'{"items": ['
    + b",".join(b'{"id": %4d, "name": "item-%04d", "qty": %3d}' % (i, i, i % 7) for i in range(22))
    + b"]}"
)
# 1 KiB of JSON in 4 chunks of 256 bytes.
CHUNKED_POST = (
    b"POST /api/v1/orders HTTP/1.1\r\n"
    b"Host: localhost:8000\r\n"
    b"User-Agent: python-httpx/0.27.0\r\n"
    b"Accept: */*\r\n"
    b"Content-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n" + _chunked(_POST_BODY, 256)
)

REQUESTS: dict[str, bytes] = {
    "small GET": SMALL_GET,
    "browser GET": BROWSER_GET,
    "chunked POST": CHUNKED_POST,
}
