"""Fixed inputs shared by the micro-benchmarks: the canned requests the parser is timed on,
the canned responses the response parser is timed on, and the latencies the histogram records.

Built once at import, never inside a timed function. (The requests were perf/bench_parser.py's;
RESULTS.md's parser figures before the micro-benchmarks were measured on the same bytes.)
"""

from __future__ import annotations

import math
import random


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


class CannedResponses:
    """Responses as a server sends them, one buffer, and what each must parse to."""

    __slots__ = ("body_length", "count", "raw", "status")

    def __init__(self, raw: bytes, *, count: int, status: int, body_length: int) -> None:
        self.raw = raw
        self.count = count  # responses in raw: the client has sent as many requests
        self.status = status  # of each
        self.body_length = body_length  # of each, after dechunking


# kestrel's (and nginx's) answer to perf/apps' GET /: the bytes wrk reads in bench_http.py.
PLAINTEXT_OK = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: kestrel\r\n"
    b"Date: Mon, 06 May 2024 09:12:44 GMT\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 13\r\n"
    b"\r\n"
    b"Hello, World!"
)

_HTML = (
    b"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Article 42</title>"
    b"</head>\n<body>\n"
    + b"".join(b"<p>Paragraph %02d of the article, as a page of text would have it.</p>\n" % i
               for i in range(24))
    + b"</body></html>\n"
)  # fmt: skip
# An HTML page from nginx behind the usual security and caching fields: 12 header fields.
BROWSER_PAGE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.24.0\r\n"
    b"Date: Mon, 06 May 2024 09:12:44 GMT\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: keep-alive\r\n"
    b"Last-Modified: Sun, 05 May 2024 21:40:02 GMT\r\n"
    b'ETag: "6637fd82-7a4"\r\n'
    b"Cache-Control: private, max-age=0, must-revalidate\r\n"
    b"Vary: Accept-Encoding\r\n"
    b"Set-Cookie: sessionid=8f2k1q9xv0c3; Path=/; HttpOnly; Secure; SameSite=Lax\r\n"
    b"Strict-Transport-Security: max-age=63072000; includeSubDomains\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"\r\n"
) % len(_HTML) + _HTML

# The chunked POST's 1 KiB of JSON coming back, in 4 chunks of 256 bytes.
CHUNKED_JSON = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: kestrel\r\n"
    b"Date: Mon, 06 May 2024 09:12:44 GMT\r\n"
    b"Content-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n" + _chunked(_POST_BODY, 256)
)

PIPELINE_DEPTH = 16

RESPONSES: dict[str, CannedResponses] = {
    "plaintext": CannedResponses(PLAINTEXT_OK, count=1, status=200, body_length=13),
    "browser page": CannedResponses(BROWSER_PAGE, count=1, status=200, body_length=len(_HTML)),
    "chunked JSON": CannedResponses(CHUNKED_JSON, count=1, status=200, body_length=len(_POST_BODY)),
    # What a pipelining client reads in one recv(): 16 answers to 16 requests sent at once.
    "pipelined x16": CannedResponses(
        PLAINTEXT_OK * PIPELINE_DEPTH, count=PIPELINE_DEPTH, status=200, body_length=13
    ),
}


def _latencies_us(count: int) -> list[int]:
    """Response latencies in microseconds: lognormal, median 1 ms, sigma 1 (seeded), as
    perf/bench_histogram.py draws them."""
    rng = random.Random(11)
    return [max(1, round(rng.lognormvariate(math.log(1000), 1.0))) for _ in range(count)]


LATENCIES_US = _latencies_us(1_000)
