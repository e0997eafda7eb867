"""Route matching: kestrel's App.match() against Starlette's router, as the tables grow.

Each table is what an API of that size looks like: resources under distinct first segments
(``/r17/items``, ``/r17/items/{item_id:int}``, ``/r17/items/{item_id:int}/notes/{note}``...),
five routes each, so a path with parameters shares its first segment with a handful of
routes. The "shared prefix" table puts every route under ``/api`` (``/api/v{r}/{item_id:int}``),
the worst case for a matcher that files routes by their first segment.

Each case asks for the last-registered resource, so a linear scan pays for the whole table:
a static path, one int parameter, two parameters, a 404 and a 405, with 10 and 1,000 routes.
Starlette's matcher is the loop of ``Router.app`` (first full match, else the first partial
one, a 405), without the handler call and without the second scan its 404 makes for
redirect_slashes: kestrel's match() does not look for a trailing-slash redirect either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from starlette.routing import Match, Route

from kestrel import App
from kestrel.routing import MethodNotAllowed, NotFound

Table = list[tuple[str, list[str]]]  # (path, methods) of each route, in registration order

SIZES = (10, 1000)
# (path, methods) of one resource, `r` its number.
RESOURCE = (
    ("/r{r}/items", ["GET", "POST"]),
    ("/r{r}/items/{{item_id:int}}", ["GET", "PUT", "DELETE"]),
    ("/r{r}/items/{{item_id:int}}/notes/{{note}}", ["GET"]),
    ("/r{r}/status", ["GET"]),
    ("/r{r}/files/{{name:path}}", ["GET"]),
)
# case -> (table, method, path template); {last} is the last resource (or route) registered.
CASES = {
    "static": ("api", "GET", "/r{last}/status"),
    "one int parameter": ("api", "GET", "/r{last}/items/42"),
    "two parameters": ("api", "GET", "/r{last}/items/42/notes/hello"),
    "404": ("api", "GET", "/r{last}/nothing/here"),
    "405": ("api", "PATCH", "/r{last}/items"),
    "shared prefix": ("shared", "GET", "/api/v{last}/7"),
}


def routes(table: str, size: int) -> tuple[Table, int]:
    """The table's routes, and the number of its last resource (or route)."""
    if table == "shared":
        return [(f"/api/v{r}/{{item_id:int}}", ["GET"]) for r in range(size)], size - 1
    resources = size // len(RESOURCE)
    return [
        (path.format(r=r), methods) for r in range(resources) for path, methods in RESOURCE
    ], resources - 1


async def endpoint(*args: Any, **params: Any) -> str:
    return "ok"


def kestrel_matcher(table: Table, method: str, path: str) -> Callable[[], Any]:
    app = App()
    for route_path, methods in table:
        app.add_route(route_path, endpoint, methods)
    match = app.match

    def matched() -> Any:
        try:
            return match(method, path)
        except (NotFound, MethodNotAllowed) as miss:
            return miss

    return matched


def starlette_matcher(table: Table, method: str, path: str) -> Callable[[], Any]:
    routes = [Route(route_path, endpoint, methods=methods) for route_path, methods in table]
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    full, partial = Match.FULL, Match.PARTIAL

    def matched() -> Any:
        found = None
        for route in routes:
            match, child_scope = route.matches(scope)
            if match is full:
                return match, child_scope
            if match is partial and found is None:
                found = match, child_scope
        return found

    return matched


MATCHERS = {"kestrel": kestrel_matcher, "starlette": starlette_matcher}
PARAMETRIZE_CASES = pytest.mark.parametrize("case", CASES, ids=lambda c: c.replace(" ", "-"))


def outcome(found: Any) -> tuple[str, dict[str, Any]]:
    """What either matcher found: ("found", parameters), ("405", {}) or ("404", {})."""
    if isinstance(found, NotFound) or found is None:
        return "404", {}
    if isinstance(found, MethodNotAllowed) or found[0] is Match.PARTIAL:
        return "405", {}
    first, second = found
    return "found", dict(second["path_params"] if isinstance(first, Match) else second)


def matcher(contender: str, case: str, size: int) -> Callable[[], Any]:
    table_name, method, template = CASES[case]
    table, last = routes(table_name, size)
    return MATCHERS[contender](table, method, template.format(last=last))


@pytest.mark.parametrize("size", SIZES)
@PARAMETRIZE_CASES
def test_the_matchers_agree(case: str, size: int) -> None:
    found = outcome(matcher("kestrel", case, size)())
    assert found == outcome(matcher("starlette", case, size)())
    assert found[0] == (case if case in ("404", "405") else "found")


@pytest.mark.parametrize("size", SIZES)
@PARAMETRIZE_CASES
@pytest.mark.parametrize("contender", MATCHERS)
def test_match(benchmark: BenchmarkFixture, contender: str, case: str, size: int) -> None:
    benchmark.group = f"route {case}, {size:,} routes"
    benchmark(matcher(contender, case, size))
