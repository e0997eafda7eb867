"""Route matching cost as the route table grows: 10 routes against 1,000.

Each table is what an API of that size looks like: resources under distinct first segments
(``/r17/items``, ``/r17/items/{item_id:int}``, ``/r17/items/{item_id:int}/notes/{note}``...),
so a path with parameters shares its first segment with a handful of routes. One more table
puts all 1,000 parameterised routes under the same first segment, the worst case for the
bucketed matcher (it then tries their patterns in order, as every regex-list router does).

For each table it times ``App.match(method, path)`` for a static path, a path with an int
parameter, one with two parameters, a 404 and a 405, on the last-registered resource (so a
linear scan would pay for the whole table). Figures are nanoseconds per match, best of
``--rounds``; what matters is the ratio of the 1,000-route table to the 10-route one in the
same run.

    python perf/bench_routing.py
    python perf/bench_routing.py --rounds 7 --number 200000
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kestrel import App
from kestrel.routing import MethodNotAllowed, NotFound

ROUTES_PER_RESOURCE = 5


async def handler(request: Any, **params: Any) -> str:
    return "ok"


def api_table(routes: int) -> tuple[App, int]:
    """An app with `routes` routes in resources of five; returns it and the last resource."""
    app = App()
    resources = routes // ROUTES_PER_RESOURCE
    for r in range(resources):
        app.add_route(f"/r{r}/items", handler, ["GET", "POST"])
        app.add_route(f"/r{r}/items/{{item_id:int}}", handler, ["GET", "PUT", "DELETE"])
        app.add_route(f"/r{r}/items/{{item_id:int}}/notes/{{note}}", handler, ["GET"])
        app.add_route(f"/r{r}/status", handler, ["GET"])
        app.add_route(f"/r{r}/files/{{name:path}}", handler, ["GET"])
    return app, resources - 1


def one_bucket_table(routes: int) -> App:
    """`routes` parameterised routes all filed under the first segment ``/api``."""
    app = App()
    for r in range(routes):
        app.add_route(f"/api/v{r}/{{item_id:int}}", handler, ["GET"])
    return app


def time_match(app: App, method: str, path: str, number: int, rounds: int) -> float:
    def match() -> None:
        with contextlib.suppress(NotFound, MethodNotAllowed):
            app.match(method, path)

    return min(timeit.repeat(match, number=number, repeat=rounds)) / number * 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=100_000, help="matches per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    small, last_small = api_table(10)
    large, last_large = api_table(1000)
    cases = [
        ("static", "GET", "/r{}/status"),
        ("one int parameter", "GET", "/r{}/items/42"),
        ("two parameters", "GET", "/r{}/items/42/notes/hello"),
        ("404", "GET", "/r{}/nothing/here"),
        ("405", "PATCH", "/r{}/items"),
    ]
    print(f"{'case':22s} {'10 routes':>12s} {'1,000 routes':>14s} {'ratio':>7s}")
    for label, method, template in cases:
        small_ns = time_match(small, method, template.format(last_small), args.number, args.rounds)
        large_ns = time_match(large, method, template.format(last_large), args.number, args.rounds)
        print(f"{label:22s} {small_ns:9.0f} ns {large_ns:11.0f} ns {large_ns / small_ns:6.2f}x")

    crowded = one_bucket_table(1000)
    crowded_ns = time_match(crowded, "GET", "/api/v999/7", args.number // 10, args.rounds)
    small_bucket = one_bucket_table(10)
    small_bucket_ns = time_match(small_bucket, "GET", "/api/v9/7", args.number // 10, args.rounds)
    print(
        f"{'one bucket, last route':22s} {small_bucket_ns:9.0f} ns {crowded_ns:11.0f} ns "
        f"{crowded_ns / small_bucket_ns:6.2f}x  (worst case: 1,000 patterns share /api)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
