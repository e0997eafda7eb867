"""kestrel.interface: which kind of app a target is, from its shape (issue #12, --interface)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import MutableMapping
from typing import Any
from wsgiref.simple_server import demo_app

import pytest

from kestrel import App
from kestrel.interface import InterfaceError, asgi2_to_asgi3, detect, resolve


async def asgi3_function(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})


class Asgi3Instance:  # Starlette, FastAPI, Django's ASGIHandler are shaped like this
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class Asgi2Class:  # the ASGI 2 "double callable": constructed with the scope
    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        message = await receive()
        await send({"type": "echo", "path": self.scope["path"], "got": message["type"]})


class WsgiInstance:  # Flask and Django's WSGIHandler are shaped like this
    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]


def three_arguments(scope: Any, receive: Any, send: Any, extra: Any) -> Any:
    return asgi3_function(scope, receive, send)


@pytest.mark.parametrize(
    ("app", "interface"),
    [
        (App(), "native"),
        (asgi3_function, "asgi3"),
        (Asgi3Instance(), "asgi3"),
        (functools.partial(three_arguments, extra=None), "asgi3"),
        (Asgi2Class, "asgi2"),
        (demo_app, "wsgi"),
        (WsgiInstance(), "wsgi"),
        (lambda environ, start_response: [b""], "wsgi"),
        (lambda environ, start_response, extra=None: [b""], "wsgi"),
    ],
    ids=[
        "kestrel-App",
        "asgi3-function",
        "asgi3-instance",
        "asgi3-partial",
        "asgi2-class",
        "wsgi-stdlib-demo",
        "wsgi-instance",
        "wsgi-lambda",
        "wsgi-defaulted-extra",
    ],
)
def test_the_shape_says_the_interface(app: Any, interface: str) -> None:
    assert detect(app) == interface


async def async_two(environ: Any, start_response: Any) -> None:
    pass


def four(a: Any, b: Any, c: Any, d: Any) -> None:
    pass


def anything(*args: Any) -> None:
    pass


class TwoArgumentClass:
    def __init__(self, a: Any, b: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("module:attr", "not callable: str"),
        (async_two, "async callable of 2 positional arguments"),
        (four, "a callable of 4 positional arguments"),
        (anything, "any number of positional arguments"),
        (TwoArgumentClass, "takes 2"),
    ],
    ids=["not-callable", "async-two", "four", "varargs", "two-argument-class"],
)
def test_what_fits_no_interface_is_refused_with_what_was_found(app: Any, message: str) -> None:
    with pytest.raises(InterfaceError, match=message):
        detect(app)


def test_interface_flag_checks_what_it_names() -> None:
    assert resolve(asgi3_function, "asgi") == "asgi3"
    assert resolve(Asgi2Class, "asgi") == "asgi2"
    assert resolve(demo_app, "wsgi") == "wsgi"
    assert resolve(App(), "native") == "native"
    with pytest.raises(InterfaceError, match="--interface wsgi, but the target looks like a asgi3"):
        resolve(asgi3_function, "wsgi")
    with pytest.raises(InterfaceError, match="--interface must be one of auto, native, asgi, wsgi"):
        resolve(asgi3_function, "rsgi")


def test_an_asgi2_app_runs_as_asgi3() -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    app = asgi2_to_asgi3(Asgi2Class)
    assert detect(app) == "asgi3"

    async def serve_one() -> None:
        await app({"type": "http", "path": "/x"}, receive, send)

    asyncio.run(serve_one())
    assert sent == [{"type": "echo", "path": "/x", "got": "http.request"}]
