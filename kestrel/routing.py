"""Routes, path converters and the router.

A route's path is compiled once, when it is registered. Matching a request then costs:

- a static path (no ``{parameter}``): one dict lookup, whatever the size of the table;
- a path with parameters: a walk down a tree of path segments, one dict lookup per literal
  segment, trying only the parameter patterns registered at that point of the tree.

So the table can grow to thousands of routes, all under ``/api`` or not, while a request
only looks at the routes that share its literal segments (perf/micro/test_routing_bench.py
measures 10 routes against 1,000, and Starlette's router on the same tables).

Precedence, as in ASP.NET Core's routing: at each segment a literal wins over a parameter,
and a parameter over a ``{name:path}`` catch-all; among parameters, the one registered first.
A converter other than ``path`` matches within one segment (it never spans a "/"). If a
converter refuses a value (``int`` of something that is not a number, or a custom
converter's ValueError), the search goes on as if that route did not exist.

Trailing slashes are significant: ``/items`` and ``/items/`` are different paths. When a
request matches no route but would match with its trailing slash added or removed, the
answer is a 308 Permanent Redirect to that path (308 keeps the method and the body, so a
POST is not turned into a GET the way 301 allows).
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kestrel.types import Endpoint

NO_MATCH: Any = object()  # what Converter.parse returns for a segment it does not take


class Converter:
    """Turns one path segment (or, for ``path``, the rest of the path) into a value.

    Subclass it and pass an instance to ``register_converter(name, converter)``: set
    ``regex`` (without capturing groups) and override ``convert``, raising ValueError for a
    value it refuses. A parameter that is a whole segment is matched with ``parse``, which a
    converter may override with something faster than its regex.
    """

    regex = "[^/]+"

    def convert(self, value: str) -> Any:
        return value

    def parse(self, segment: str) -> Any:
        """The converted value of a whole segment, or NO_MATCH."""
        compiled: re.Pattern[str] | None = self.__dict__.get("_compiled")
        if compiled is None or compiled.pattern != self.regex:
            compiled = self.__dict__["_compiled"] = re.compile(self.regex)
        if compiled.fullmatch(segment) is None:
            return NO_MATCH
        try:
            return self.convert(segment)
        except ValueError:
            return NO_MATCH


class StringConverter(Converter):
    regex = "[^/]+"

    def parse(self, segment: str) -> Any:
        return segment if segment else NO_MATCH  # a segment never holds "/"


class IntConverter(Converter):
    regex = "[0-9]+"

    def convert(self, value: str) -> int:
        return int(value)

    def parse(self, segment: str) -> Any:
        # isdigit() alone would take other scripts' digits, which [0-9]+ does not.
        return int(segment) if segment.isdigit() and segment.isascii() else NO_MATCH


class FloatConverter(Converter):
    regex = r"[0-9]+(?:\.[0-9]+)?"

    def convert(self, value: str) -> float:
        return float(value)


class UUIDConverter(Converter):
    regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

    def convert(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)


class PathConverter(Converter):
    regex = ".*"


CONVERTERS: dict[str, Converter] = {
    "str": StringConverter(),
    "int": IntConverter(),
    "float": FloatConverter(),
    "uuid": UUIDConverter(),
    "path": PathConverter(),
}


def register_converter(name: str, converter: Converter) -> None:
    """Make ``{param:name}`` available in route paths registered from now on."""
    if not name.isidentifier():
        raise ValueError(f"converter name must be an identifier, not {name!r}")
    re.compile(converter.regex)  # fail now, not at the first request
    CONVERTERS[name] = converter


_PARAM = re.compile(r"{([^{}:]+)(?::([^{}]+))?}")


@dataclass(eq=False)
class Route:
    """One path template and the handlers for its methods."""

    path: str
    converters: dict[str, Converter] = field(default_factory=dict)  # {} for a static path
    handlers: dict[str, Handler] = field(default_factory=dict)

    @property
    def allow(self) -> str:
        methods = set(self.handlers)
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))

    def handler_for(self, method: str) -> Handler | None:
        handler = self.handlers.get(method)
        if handler is None and method == "HEAD":
            handler = self.handlers.get("GET")  # GET implies HEAD; the engine drops the body
        return handler


@dataclass(eq=False, slots=True)
class Handler:
    """What runs for one method of one route."""

    endpoint: Endpoint
    route: Route
    is_async: bool
    max_body_size: int | None  # None: the server's default limit
    name: str
    path: str = field(init=False)  # route.path, what request.route reports, one lookup nearer

    def __post_init__(self) -> None:
        self.path = self.route.path


def parse_path(path: str) -> dict[str, Converter]:
    """``/users/{id:int}`` -> {"id": IntConverter}, checked; a static path gives {}.

    ``*`` is a path too: the target of ``OPTIONS *`` (RFC 9112 §3.2.4)."""
    if path == "*":
        return {}
    if not path.startswith("/"):
        raise ValueError(f"route paths start with '/': {path!r}")
    converters: dict[str, Converter] = {}
    position = 0
    for match in _PARAM.finditer(path):
        name, kind = match.group(1), match.group(2) or "str"
        if not name.isidentifier():
            raise ValueError(f"parameter name {name!r} in {path!r} is not an identifier")
        if name in converters:
            raise ValueError(f"parameter {name!r} appears twice in {path!r}")
        converter = CONVERTERS.get(kind)
        if converter is None:
            raise ValueError(
                f"unknown converter {kind!r} in {path!r}; known: " + ", ".join(sorted(CONVERTERS))
            )
        converters[name] = converter
        position = match.end()
    if "{" in path[position:] or "}" in path[position:]:
        raise ValueError(f"unbalanced braces in route path {path!r}")
    return converters


Params = list[tuple[str, Converter]]  # a pattern's parameters, in order


class _Node:
    """One point of the segment tree: what may follow the segments that led here."""

    __slots__ = ("catch_alls", "literals", "parameters", "patterns", "route")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        # A whole segment that is one parameter ({id:int}): (name, converter, next node).
        self.parameters: list[tuple[str, Converter, _Node]] = []
        # A segment mixing text and parameters ({name}.txt): (pattern, its parameters in
        # order, next node).
        self.patterns: list[tuple[re.Pattern[str], Params, _Node]] = []
        # The rest of the path, for a {name:path} catch-all: (pattern, parameters, route).
        self.catch_alls: list[tuple[re.Pattern[str], Params, Route]] = []
        self.route: Route | None = None  # the route whose path ends here

    def add(self, segments: list[str], route: Route) -> None:
        node = self
        for i, segment in enumerate(segments):
            if "{" not in segment:
                node = node.literals.setdefault(segment, _Node())
                continue
            names = _names(segment)
            if any(isinstance(route.converters[name], PathConverter) for name in names):
                rest = "/".join(segments[i:])
                params = [(name, route.converters[name]) for name in _names(rest)]
                node.catch_alls.append((_segment_pattern(rest, route), params, route))
                return
            if _PARAM.fullmatch(segment):
                converter = route.converters[names[0]]
                for name, existing, child in node.parameters:
                    # Shared only if named alike too: values are named on the way down.
                    if name == names[0] and existing is converter:
                        node = child
                        break
                else:
                    child = _Node()
                    node.parameters.append((names[0], converter, child))
                    node = child
                continue
            pattern = _segment_pattern(segment, route)
            params = [(name, route.converters[name]) for name in names]
            for existing_pattern, existing_params, child in node.patterns:
                if existing_pattern.pattern == pattern.pattern and existing_params == params:
                    node = child
                    break
            else:
                child = _Node()
                node.patterns.append((pattern, params, child))
                node = child
        node.route = route


def _names(template: str) -> list[str]:
    return [match.group(1) for match in _PARAM.finditer(template)]


def _segment_pattern(template: str, route: Route) -> re.Pattern[str]:
    """The pattern a template piece (one segment, or the rest for a catch-all) must match."""
    pattern = ""
    position = 0
    for match in _PARAM.finditer(template):
        converter = route.converters[match.group(1)]
        pattern += re.escape(template[position : match.start()]) + f"({converter.regex})"
        position = match.end()
    return re.compile(pattern + re.escape(template[position:]))


def _walk(
    node: _Node,
    segments: list[str],
    index: int,
    values: list[tuple[str, Any]],
    method: str,
    allowed: list[Route],
) -> tuple[Handler, dict[str, Any]] | None:
    """Depth-first, by precedence: the handler for `method` of the first route the path
    matches. `values` holds the converted parameters on the way down; `allowed` gets the
    first route that matched the path but not the method (for 405)."""
    if index == len(segments):
        route = node.route
        if route is None:
            return None
        handler = route.handler_for(method)
        if handler is None:
            if not allowed:
                allowed.append(route)
            return None
        return handler, dict(values)
    segment = segments[index]
    child = node.literals.get(segment)
    if child is not None:
        found = _walk(child, segments, index + 1, values, method, allowed)
        if found is not None:
            return found
    for name, converter, child in node.parameters:
        value = converter.parse(segment)
        if value is not NO_MATCH:
            values.append((name, value))
            found = _walk(child, segments, index + 1, values, method, allowed)
            if found is not None:
                return found
            values.pop()
    for pattern, params, child in node.patterns:
        converted = _convert(pattern.fullmatch(segment), params)
        if converted is not None:
            depth = len(values)
            values.extend(converted)
            found = _walk(child, segments, index + 1, values, method, allowed)
            if found is not None:
                return found
            del values[depth:]
    if node.catch_alls:
        rest = "/".join(segments[index:])
        for pattern, params, route in node.catch_alls:
            converted = _convert(pattern.fullmatch(rest), params)
            if converted is not None:
                handler = route.handler_for(method)
                if handler is not None:
                    return handler, dict(values + converted)
                if not allowed:
                    allowed.append(route)
    return None


def _convert(match: re.Match[str] | None, params: Params) -> list[tuple[str, Any]] | None:
    """Converted values of a pattern's groups, or None if it did not match or was refused."""
    if match is None:
        return None
    try:
        return [
            (name, converter.convert(raw))
            for (name, converter), raw in zip(params, match.groups(), strict=True)
        ]
    except ValueError:
        return None


class NotFound(Exception):
    pass


class MethodNotAllowed(Exception):
    def __init__(self, allow: str) -> None:
        super().__init__(allow)
        self.allow = allow


class Router:
    """A table of routes; mount it on an App (or another Router) under a prefix."""

    def __init__(self) -> None:
        self.static: dict[str, Route] = {}  # whole static paths: the one-lookup case
        self.tree = _Node()  # routes with parameters, by segment
        self.routes: list[Route] = []

    # ---- Registration.

    def route(
        self,
        path: str,
        methods: Iterable[str] = ("GET",),
        *,
        name: str | None = None,
        max_body_size: int | None = None,
    ) -> Callable[[Endpoint], Endpoint]:
        """Register a handler for `path` and `methods`; GET implies HEAD unless HEAD has its own."""

        def register(endpoint: Endpoint) -> Endpoint:
            self.add_route(path, endpoint, methods, name=name, max_body_size=max_body_size)
            return endpoint

        return register

    def get(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route(path, ("GET",), **options)

    def post(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route(path, ("POST",), **options)

    def put(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route(path, ("PUT",), **options)

    def patch(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route(path, ("PATCH",), **options)

    def delete(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route(path, ("DELETE",), **options)

    def add_route(
        self,
        path: str,
        endpoint: Endpoint,
        methods: Iterable[str] = ("GET",),
        *,
        name: str | None = None,
        max_body_size: int | None = None,
    ) -> None:
        if isinstance(methods, str):
            raise TypeError("methods must be a list of method names, e.g. ['GET', 'POST']")
        if not callable(endpoint):
            raise TypeError(f"a route handler must be callable, not {endpoint!r}")
        if max_body_size is not None and max_body_size < 0:
            raise ValueError("max_body_size must be 0 or more bytes (None: server default)")
        method_set = {m.upper() for m in methods}
        if not method_set:
            raise ValueError(f"route {path!r} needs at least one method")
        route = self._route_for(path)
        handler = Handler(
            endpoint=endpoint,
            route=route,
            is_async=_is_async(endpoint),
            max_body_size=max_body_size,
            name=name or str(getattr(endpoint, "__name__", None) or repr(endpoint)),
        )
        for method in method_set:
            existing = route.handlers.get(method)
            if existing is not None:
                raise ValueError(f"{method} {path} is already routed to {existing.name}")
        for method in method_set:
            route.handlers[method] = handler

    def _route_for(self, path: str) -> Route:
        converters = parse_path(path)
        if not converters:
            route = self.static.get(path)
            if route is None:
                route = self.static[path] = Route(path)
                self.routes.append(route)
            return route
        for route in self.routes:
            if route.path == path:
                return route
        route = Route(path, converters)
        self.routes.append(route)
        self.tree.add(path[1:].split("/"), route)
        return route

    def mount(self, prefix: str, router: Router) -> None:
        """Add every route of `router` under `prefix` (``/api`` + ``/items`` = ``/api/items``).

        The routes are copied now: routes added to `router` later are not seen here.
        """
        if prefix != "" and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError(
                f"a mount prefix starts with '/' and does not end with one: {prefix!r}"
            )
        for route in router.routes:
            for method, handler in route.handlers.items():
                self.add_route(
                    prefix + route.path,
                    handler.endpoint,
                    [method],
                    name=handler.name,
                    max_body_size=handler.max_body_size,
                )

    # ---- Matching.

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, Any]]:
        """The handler for a request and its converted path parameters.

        Raises NotFound, or MethodNotAllowed carrying the Allow header's value.
        """
        route = self.static.get(path)
        if route is not None:
            handler = route.handler_for(method)
            if handler is not None:
                return handler, {}
        return self.match_parameters(method, path, route)

    def match_parameters(
        self, method: str, path: str, allowed: Route | None = None
    ) -> tuple[Handler, dict[str, Any]]:
        """match() once the static table has been looked at (`allowed`: the static route
        that has the path but not the method)."""
        segments = path[1:].split("/")
        # The search's first branch, as one loop: at each segment the literal child, else the
        # first whole-segment parameter that takes it. When that branch ends at a handler for
        # `method` (most requests), it is what _walk would find first, without a call per
        # segment; otherwise _walk searches the whole tree.
        node = self.tree
        params: dict[str, Any] = {}
        for segment in segments:
            child = node.literals.get(segment)
            if child is None:
                for name, converter, parameter_child in node.parameters:
                    value = converter.parse(segment)
                    if value is not NO_MATCH:
                        params[name] = value
                        child = parameter_child
                        break
                else:
                    break  # no child takes this segment: leave the loop for _walk
            node = child
        else:  # every segment was followed
            if node.route is not None:
                # Exact method only; HEAD served by a GET handler is left to _walk.
                handler = node.route.handlers.get(method)
                if handler is not None:
                    return handler, params
        matched: list[Route] = []
        found = _walk(self.tree, segments, 0, [], method, matched)
        if found is not None:
            return found
        if allowed is None and matched:
            allowed = matched[0]
        if allowed is not None:
            raise MethodNotAllowed(allowed.allow)
        raise NotFound()

    def has_path(self, path: str) -> bool:
        """Does any route match this path, for any method?"""
        try:
            self.match("\0", path)
        except MethodNotAllowed:
            return True
        except NotFound:
            return False
        return True

    def url_path_for(self, name: str, **params: Any) -> str:
        """The path of the route whose handler is called `name`, with `params` filled in."""
        for route in self.routes:
            if any(h.name == name for h in route.handlers.values()):
                if set(params) != set(route.converters):
                    continue
                return _PARAM.sub(lambda m: str(params[m.group(1)]), route.path)
        raise LookupError(f"no route named {name!r} takes parameters {sorted(params)}")


def _is_async(endpoint: Endpoint) -> bool:
    while hasattr(endpoint, "func"):  # functools.partial
        endpoint = endpoint.func
    if inspect.iscoroutinefunction(endpoint):
        return True
    call = getattr(endpoint, "__call__", None)  # noqa: B004 - an instance with async __call__
    return call is not None and inspect.iscoroutinefunction(call)
