"""Which kind of app a target is: kestrel's own, ASGI 3, ASGI 2, or WSGI (issue #12).

`kestrel TARGET --interface auto` must serve whatever the target names without being told
what it is, as uvicorn does for ASGI. The callable's shape decides, because nothing else
is reliable across frameworks:

* a kestrel ``App`` (or anything that already implements the engine's ``Host``) is native;
* a coroutine function of (scope, receive, send) is ASGI 3, and so is an object whose
  ``__call__`` is one (Starlette, FastAPI and Django's ASGIHandler are instances);
* a callable of one parameter (scope) is ASGI 2: called with the scope, it returns the
  coroutine function of (receive, send). ``asgi2_to_asgi3`` wraps it;
* a plain function of two parameters (environ, start_response) is WSGI (Flask and Django's
  WSGIHandler are instances whose ``__call__`` takes those two).

What fits none of these is refused with a message naming what was found, never guessed.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from kestrel.host import Host

Interface = Literal["native", "asgi3", "asgi2", "wsgi"]
INTERFACES: tuple[str, ...] = ("auto", "native", "asgi", "wsgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI3App = Callable[[Scope, Receive, Send], Awaitable[None]]


class InterfaceError(Exception):
    """The target is not an app of any interface kestrel serves (or not of the one asked)."""


def _is_async(app: Any) -> bool:
    """Whether calling ``app`` runs a coroutine function (itself, a partial, or __call__)."""
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(
        getattr(app, "__call__", None)  # noqa: B004 (the attribute itself is wanted)
    )


def _positional_count(function: Any) -> int | None:
    """How many positional arguments a call of ``function`` must pass (None: any number)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature
        return None
    count = 0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        # Only the ones a caller must pass: a defaulted extra does not change the interface.
        if parameter.default is inspect.Parameter.empty and parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            count += 1
    return count


def detect(app: Any) -> Interface:
    """The interface ``app`` speaks, from its shape; InterfaceError if none."""
    if isinstance(app, Host):
        return "native"
    if not callable(app):
        raise InterfaceError(f"the target is not callable: {type(app).__name__}")
    if inspect.isclass(app):
        # A class is ASGI 2 when constructing it with the scope gives the (receive, send)
        # callable; its __init__ takes the scope (self aside).
        count = _positional_count(app)
        if count == 1:
            return "asgi2"
        raise InterfaceError(
            f"the target is the class {app.__name__}; an ASGI 2 class takes one argument "
            f"(scope), this one takes {count if count is not None else 'any number'}"
        )
    # inspect.signature sees through instances (their __call__, without self) and partials.
    count = _positional_count(app)
    if _is_async(app):
        if count in (3, None):
            return "asgi3"
        raise InterfaceError(
            f"the target is an async callable of {count} positional arguments; an ASGI 3 app "
            "takes three (scope, receive, send)"
        )
    if count == 3:
        return "asgi3"  # a plain callable that returns the awaitable (a wrapper, a partial)
    if count == 2:
        return "wsgi"
    if count == 1:
        return "asgi2"
    raise InterfaceError(
        f"cannot tell which interface the target speaks: a callable of "
        f"{count if count is not None else 'any number of'} positional arguments (ASGI 3 takes "
        "(scope, receive, send), ASGI 2 (scope), WSGI (environ, start_response)); "
        "name it with --interface"
    )


def resolve(app: Any, asked: str = "auto") -> Interface:
    """The interface to serve ``app`` with: detected, and checked against ``--interface``."""
    if asked not in INTERFACES:
        raise InterfaceError(f"--interface must be one of {', '.join(INTERFACES)}, not {asked!r}")
    found = detect(app)
    if asked == "auto":
        return found
    family = "asgi" if found in ("asgi3", "asgi2") else found
    if family != asked:
        raise InterfaceError(f"--interface {asked}, but the target looks like a {found} app")
    return found


def asgi2_to_asgi3(app: Callable[[Scope], Any]) -> ASGI3App:
    """An ASGI 2 app (scope -> coroutine function of receive, send) as an ASGI 3 callable."""

    async def asgi3(scope: Scope, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi3
