"""Where the tests cut an input: the split points every parser and processor test sends
its bytes with."""

from __future__ import annotations


def cuts(data: bytes, limit: int = 320) -> list[list[int]]:
    """The splits every input is sent with: whole, cut once at each byte boundary, and a
    byte at a time. A longer input is cut only where parsers go wrong: around every CRLF, at
    both ends, and in the middle."""
    if len(data) <= limit:
        points: list[int] = list(range(1, len(data)))
    else:
        interesting = {1, 2, len(data) // 2, len(data) - 2, len(data) - 1}
        at = data.find(b"\r\n")
        while at >= 0:
            interesting.update((at, at + 1, at + 2))
            at = data.find(b"\r\n", at + 1)
        points = sorted(p for p in interesting if 0 < p < len(data))
    return [[], *([p] for p in points), list(range(1, len(data)))]
