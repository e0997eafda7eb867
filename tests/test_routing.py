"""Routing: methods, converters, HEAD, 405/404/400, the trailing-slash policy, mounting.

Everything goes through kestrel.testing.TestClient, i.e. real HTTP/1.1 bytes through the
engine's parser and connection code over a socketpair.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kestrel
import kestrel.routing
from kestrel import App, Converter, Request, Response, Router, register_converter
from kestrel.testing import TestClient

# ---- Methods.


def test_method_decorators_route_each_method() -> None:
    app = App()

    @app.get("/thing")
    async def get_thing(request: Request) -> str:
        return "get"

    @app.post("/thing")
    async def post_thing(request: Request) -> str:
        return "post"

    @app.put("/thing")
    async def put_thing(request: Request) -> str:
        return "put"

    @app.patch("/thing")
    async def patch_thing(request: Request) -> str:
        return "patch"

    @app.delete("/thing")
    async def delete_thing(request: Request) -> str:
        return "delete"

    @app.route("/multi", methods=["GET", "post"])
    async def multi(request: Request) -> str:
        return f"multi {request.method}"

    with TestClient(app) as client:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            response = client.request(method, "/thing")
            assert response.status_code == 200, method
            assert response.text == method.lower()
        assert client.get("/multi").text == "multi GET"
        assert client.post("/multi").text == "multi POST"  # method names are case-folded
        assert client.put("/multi").status_code == 405


def test_route_registration_errors() -> None:
    app = App()

    @app.get("/dup")
    async def first(request: Request) -> str:
        return "1"

    with pytest.raises(ValueError, match="already routed to first"):
        app.get("/dup")(first)
    with pytest.raises(ValueError, match="start with '/'"):
        app.get("no-slash")(first)
    with pytest.raises(ValueError, match="unknown converter 'nope'"):
        app.get("/x/{a:nope}")(first)
    with pytest.raises(ValueError, match="appears twice"):
        app.get("/x/{a}/{a}")(first)
    with pytest.raises(TypeError, match="list of method names"):
        app.route("/x", methods="GET")(first)
    with pytest.raises(ValueError, match="at least one method"):
        app.route("/x", methods=[])(first)
    with pytest.raises(ValueError, match="max_body_size"):
        app.post("/x", max_body_size=-1)(first)


# ---- Converters and path parameters.


def test_builtin_converters_pass_converted_keyword_arguments() -> None:
    app = App()

    @app.get("/str/{value}")
    async def as_default(request: Request, value: str) -> dict[str, Any]:
        return {"type": type(value).__name__, "value": value}

    @app.get("/s/{value:str}")
    async def as_str(request: Request, value: str) -> dict[str, Any]:
        return {"type": type(value).__name__, "value": value}

    @app.get("/users/{user_id:int}")
    async def as_int(request: Request, *, user_id: int) -> dict[str, Any]:
        # Keyword-only: the parameter can only arrive as a keyword argument.
        return {"type": type(user_id).__name__, "value": user_id}

    @app.get("/price/{amount:float}")
    async def as_float(request: Request, amount: float) -> dict[str, Any]:
        return {"type": type(amount).__name__, "value": amount}

    @app.get("/orders/{order_id:uuid}")
    async def as_uuid(request: Request, order_id: uuid.UUID) -> dict[str, Any]:
        return {"type": type(order_id).__name__, "value": str(order_id)}

    @app.get("/files/{rest:path}")
    async def as_path(request: Request, rest: str) -> dict[str, Any]:
        return {"type": type(rest).__name__, "value": rest}

    @app.get("/users/{user_id:int}/posts/{slug}")
    def two_params(request: Request, user_id: int, slug: str) -> dict[str, Any]:
        # A plain def handler (thread pool) gets its parameters the same way.
        return {"user_id": user_id, "slug": slug, "params": request.path_params}

    order = uuid.uuid4()
    with TestClient(app) as client:
        assert client.get("/str/abc").json() == {"type": "str", "value": "abc"}
        assert client.get("/s/a%20b").json() == {"type": "str", "value": "a b"}  # decoded
        assert client.get("/users/42").json() == {"type": "int", "value": 42}
        assert client.get("/price/1.25").json() == {"type": "float", "value": 1.25}
        assert client.get("/price/3").json() == {"type": "float", "value": 3.0}
        assert client.get(f"/orders/{order}").json() == {"type": "UUID", "value": str(order)}
        upper = str(order).upper()
        assert client.get(f"/orders/{upper}").json() == {"type": "UUID", "value": str(order)}
        assert client.get("/files/a/b/c.txt").json() == {"type": "str", "value": "a/b/c.txt"}
        assert client.get("/files/a%2Fb").json() == {"type": "str", "value": "a/b"}
        assert client.get("/users/7/posts/hello").json() == {
            "user_id": 7,
            "slug": "hello",
            "params": {"user_id": 7, "slug": "hello"},
        }
        # Values a converter's pattern refuses do not match: 404, never a 500.
        for path in (
            "/users/abc",
            "/users/-1",
            "/users/1.5",
            "/price/abc",
            "/price/1.",
            "/orders/not-a-uuid",
            "/orders/12345678-1234-1234-1234-12345678",
            "/str/a/b",  # str stops at a slash
        ):
            assert client.get(path).status_code == 404, path


@pytest.fixture
def converter_name() -> Iterator[str]:
    """A converter name registered for one test, removed afterwards."""
    name = "isodate"
    yield name
    kestrel.routing.CONVERTERS.pop(name, None)


def test_custom_converter(converter_name: str) -> None:
    class DateConverter(Converter):
        regex = r"\d{4}-\d{2}-\d{2}"

        def convert(self, value: str) -> datetime.date:
            return datetime.date.fromisoformat(value)  # ValueError for 2024-13-45

    register_converter(converter_name, DateConverter())
    app = App()

    @app.get(f"/day/{{day:{converter_name}}}")
    async def day(request: Request, day: datetime.date) -> dict[str, Any]:
        assert isinstance(day, datetime.date)
        return {"weekday": day.isoweekday(), "next": (day + datetime.timedelta(days=1)).isoformat()}

    with TestClient(app) as client:
        assert client.get("/day/2024-02-28").json() == {"weekday": 3, "next": "2024-02-29"}
        # The pattern refuses it: no match.
        assert client.get("/day/yesterday").status_code == 404
        # The pattern matches but convert() raises ValueError: also no match, not a 500.
        assert client.get("/day/2024-13-45").status_code == 404


def test_register_converter_validates() -> None:
    class Bad(Converter):
        regex = "[unclosed"

    with pytest.raises(ValueError, match="identifier"):
        register_converter("not a name", Converter())
    with pytest.raises(re.error):
        register_converter("bad_regex_converter", Bad())
    assert "bad_regex_converter" not in kestrel.routing.CONVERTERS


# ---- HEAD, 405, 404.


def test_get_implies_head() -> None:
    seen: list[str] = []
    app = App()

    @app.get("/doc")
    async def doc(request: Request) -> dict[str, str]:
        seen.append(request.method)
        return {"hello": "world"}

    @app.get("/own-head")
    async def own_get(request: Request) -> str:
        return "from get"

    @app.route("/own-head", methods=["HEAD"])
    async def own_head(request: Request) -> Response:
        return Response(b"", headers={"x-handler": "head"})

    with TestClient(app) as client:
        get = client.get("/doc")
        head = client.head("/doc")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
        assert head.headers["content-length"] == get.headers["content-length"] == "17"
        assert seen == ["GET", "HEAD"]  # the GET handler ran, seeing the real method
        # An explicit HEAD handler wins over the implied one.
        assert client.head("/own-head").headers["x-handler"] == "head"
        assert client.get("/own-head").text == "from get"


def test_wrong_method_is_405_with_allow() -> None:
    app = App()

    @app.get("/read")
    async def read(request: Request) -> str:
        return "r"

    @app.route("/rw", methods=["GET", "POST"])
    async def rw(request: Request) -> str:
        return "rw"

    @app.delete("/items/{item_id:int}")
    async def remove(request: Request, item_id: int) -> None:
        return None

    @app.put("/items/{item_id:int}")
    async def replace(request: Request, item_id: int) -> None:
        return None

    with TestClient(app) as client:
        response = client.post("/read")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert client.delete("/rw").headers["allow"] == "GET, HEAD, POST"
        response = client.get("/items/3")
        assert response.status_code == 405
        assert response.headers["allow"] == "DELETE, PUT"  # no HEAD without a GET
        assert client.head("/items/3").status_code == 405
        assert client.delete("/items/3").status_code == 204


def test_unknown_paths_are_404() -> None:
    app = App()

    @app.get("/users/{user_id:int}")
    async def user(request: Request, user_id: int) -> str:
        return "u"

    with TestClient(app) as client:
        for method, path in [
            ("GET", "/"),
            ("GET", "/nope"),
            ("POST", "/nope"),  # an unknown path is 404 whatever the method
            ("GET", "/users"),
            ("GET", "/users/1/extra"),
        ]:
            response = client.request(method, path)
            assert response.status_code == 404, (method, path)
            assert response.text == "Not Found"
            assert "allow" not in response.headers


# ---- Percent-encoding.


BAD_PATHS = [
    "/%zz",  # not hex
    "/%",  # truncated escape
    "/a%2",  # truncated escape
    "/%ff",  # not UTF-8 once decoded
    "/%c3%28",  # invalid UTF-8 continuation
    "/%e2%82",  # truncated UTF-8 sequence
    "/users/%zz",  # under a parameter route
    "/users/%80",
]


def _percent_app(*, debug: bool = False, middleware: bool = False) -> App:
    app = App(debug=debug)

    @app.get("/users/{name}")
    async def user(request: Request, name: str) -> str:
        return name

    @app.get("/café")
    async def cafe(request: Request) -> dict[str, str]:
        return {"path": request.path, "raw": request.raw_path.decode()}

    if middleware:

        @app.middleware
        async def reads_path(request: Request, call_next: Any) -> Any:
            # The first to decode the path.
            request.state.path = request.path  # type: ignore[attr-defined]
            return await call_next(request)

    return app


@pytest.mark.parametrize(
    ("debug", "middleware"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_undecodable_percent_encoding_is_400(debug: bool, middleware: bool) -> None:
    with TestClient(_percent_app(debug=debug, middleware=middleware)) as client:
        for path in BAD_PATHS:
            response = client.get(path)
            assert response.status_code == 400, path
            assert "Traceback" not in response.text
        # Good encodings still decode.
        assert client.get("/users/J%C3%B6rg").text == "Jörg"
        # The query string is the handler's data: bad escapes there are no error at all.
        assert client.get("/users/x?q=%ff&r=%zz").status_code == 200
        assert client.get("/caf%C3%A9").json() == {"path": "/café", "raw": "/caf%C3%A9"}


# ---- Trailing slashes.


def test_trailing_slash_policy_is_documented() -> None:
    doc = kestrel.routing.__doc__ or ""
    assert "Trailing slashes are significant" in doc
    assert "308" in doc


def test_trailing_slash_redirects_with_308() -> None:
    app = App()

    @app.get("/items")
    async def items(request: Request) -> str:
        return "items"

    @app.get("/dir/")
    async def directory(request: Request) -> str:
        return "dir"

    @app.post("/submit")
    async def submit(request: Request) -> str:
        return "submitted"

    @app.get("/both")
    async def both(request: Request) -> str:
        return "no slash"

    @app.get("/both/")
    async def both_slash(request: Request) -> str:
        return "slash"

    @app.get("/users/{user_id:int}")
    async def user(request: Request, user_id: int) -> str:
        return str(user_id)

    with TestClient(app) as client:
        response = client.get("/items/")
        assert response.status_code == 308
        assert response.headers["location"] == "/items"
        assert client.get("/items/?page=2&q=a+b").headers["location"] == "/items?page=2&q=a+b"
        assert client.get("/dir").headers["location"] == "/dir/"
        assert client.get("/users/5/").headers["location"] == "/users/5"
        # 308 keeps the method: a POST is redirected, not turned into a GET.
        response = client.post("/submit/", content=b"data")
        assert response.status_code == 308
        assert response.headers["location"] == "/submit"
        # Both forms routed: each is its own path, no redirect.
        assert client.get("/both").text == "no slash"
        assert client.get("/both/").text == "slash"
        # Nothing to redirect to: 404.
        assert client.get("/missing/").status_code == 404
        assert client.get("/items").text == "items"


# ---- Mounting.


def test_mount_sub_router_under_prefix() -> None:
    api = Router()

    @api.get("/items/{item_id:int}")
    async def item(request: Request, item_id: int) -> dict[str, Any]:
        return {"item_id": item_id, "route": request.route}

    @api.post("/items")
    def create(request: Request) -> Response:
        return Response(b"created", status=201)

    @api.post("/upload", max_body_size=4)
    async def upload(request: Request) -> bytes:
        return await request.body()

    admin = Router()

    @admin.get("/")
    async def admin_root(request: Request) -> str:
        return "admin"

    api.mount("/admin", admin)  # nested: /api/admin/

    app = App()

    @app.get("/")
    async def root(request: Request) -> str:
        return "root"

    app.mount("/api", api)

    with TestClient(app) as client:
        assert client.get("/").text == "root"
        assert client.get("/api/items/3").json() == {
            "item_id": 3,
            "route": "/api/items/{item_id:int}",
        }
        assert client.post("/api/items").status_code == 201
        response = client.delete("/api/items")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert client.get("/api/admin/").text == "admin"
        assert client.get("/api/admin").headers["location"] == "/api/admin/"
        assert client.get("/items/3").status_code == 404  # only under the prefix
        # The route's own body limit comes along.
        assert client.post("/api/upload", content=b"abcd").content == b"abcd"
        assert client.post("/api/upload", content=b"abcde").status_code == 413

    with pytest.raises(ValueError, match="mount prefix"):
        app.mount("api", Router())
    with pytest.raises(ValueError, match="mount prefix"):
        app.mount("/api/", Router())


# ---- Precedence and the segment tree.


def test_literal_beats_parameter_beats_catch_all_whatever_the_order() -> None:
    app = App()

    @app.get("/files/{name:path}")
    async def catch_all(request: Request, name: str) -> str:
        return f"catch-all {name}"

    @app.get("/files/{name}")
    async def one_segment(request: Request, name: str) -> str:
        return f"parameter {name}"

    @app.get("/files/latest")
    async def literal(request: Request) -> str:
        return "literal"

    client = TestClient(app)
    assert client.get("/files/latest").text == "literal"
    assert client.get("/files/report.txt").text == "parameter report.txt"
    assert client.get("/files/a/b/c.txt").text == "catch-all a/b/c.txt"
    assert client.get("/files/").text == "catch-all "


def test_a_refusing_converter_falls_through_to_the_next_route() -> None:
    app = App()

    @app.get("/items/{item_id:int}")
    async def by_id(request: Request, item_id: int) -> str:
        return f"id {item_id}"

    @app.get("/items/{slug}")
    async def by_slug(request: Request, slug: str) -> str:
        return f"slug {slug}"

    client = TestClient(app)
    assert client.get("/items/42").text == "id 42"
    assert client.get("/items/forty-two").text == "slug forty-two"


def test_parameters_named_differently_at_the_same_place_keep_their_names() -> None:
    app = App()

    @app.get("/a/{x:int}/b")
    async def first(request: Request, x: int) -> str:
        return f"x={x}"

    @app.get("/a/{y:int}/c")
    async def second(request: Request, y: int) -> str:
        return f"y={y}"

    client = TestClient(app)
    assert client.get("/a/1/b").text == "x=1"
    assert client.get("/a/2/c").text == "y=2"


def test_a_thousand_routes_under_one_prefix_all_match_with_their_own_methods() -> None:
    app = App()

    def make(n: int) -> Callable[..., Awaitable[str]]:
        async def handler(request: Request, item_id: int) -> str:
            return f"{n}:{item_id}"

        return handler

    for n in range(1000):
        app.add_route(f"/api/v{n}/{{item_id:int}}", make(n), ["GET"])
        app.add_route(f"/api/v{n}/{{item_id:int}}", make(n), ["DELETE"])
    for n in (0, 499, 999):
        _, params = app.match("GET", f"/api/v{n}/7")
        assert params == {"item_id": 7}
    client = TestClient(app)
    assert client.get("/api/v999/7").text == "999:7"
    reply = client.post("/api/v999/7")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "DELETE, GET, HEAD"
    assert client.get("/api/v1000/7").status_code == 404


# ---- The loop that follows the first branch agrees with the full search.

_SEGMENT_TEMPLATES = ["a", "b", "1", "{x}", "{n:int}", "{f:float}", "{x}.txt", "{p:path}"]
_PATH_SEGMENTS = ["a", "b", "1", "22", "1.5", "z.txt", "", "c"]


def _template(segments: list[str]) -> str:
    # Parameter names made unique per route, and nothing after a catch-all.
    parts = []
    for i, segment in enumerate(segments):
        parts.append(
            segment.replace("{x", f"{{x{i}")
            .replace("{n", f"{{n{i}")
            .replace("{f", f"{{f{i}")
            .replace("{p", f"{{p{i}")
        )
        if segment == "{p:path}":
            break
    return "/" + "/".join(parts)


@settings(max_examples=300, deadline=None)
@given(
    routes=st.lists(
        st.tuples(
            st.lists(st.sampled_from(_SEGMENT_TEMPLATES), min_size=1, max_size=3),
            st.sampled_from(["GET", "POST"]),
        ),
        min_size=1,
        max_size=8,
    ),
    paths=st.lists(
        st.lists(st.sampled_from(_PATH_SEGMENTS), min_size=1, max_size=4), min_size=1, max_size=10
    ),
    method=st.sampled_from(["GET", "HEAD", "POST"]),
)
def test_following_the_first_branch_finds_what_the_full_search_finds(
    routes: list[tuple[list[str], str]], paths: list[list[str]], method: str
) -> None:
    router = Router()
    for n, (segments, route_method) in enumerate(routes):
        path = _template(segments)
        if "{" not in path:
            continue  # static paths never reach the tree
        with contextlib.suppress(ValueError):  # the same method and path twice
            router.add_route(path, lambda request, n=n, **_: n, [route_method])
    for segments in paths:
        path = "/" + "/".join(segments)
        expected = kestrel.routing._walk(router.tree, path[1:].split("/"), 0, [], method, [])
        try:
            got = router.match_parameters(method, path)
        except (kestrel.routing.NotFound, kestrel.routing.MethodNotAllowed):
            assert expected is None
            continue
        assert expected is not None
        assert got[0] is expected[0] and got[1] == expected[1]
