"""The request a handler receives.

It is the engine's request object itself (the framework asks the engine to create this
subclass), so the framework adds no allocation per request. Everything here is computed on
first use and cached: a handler that never looks at the query string never parses it.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes, urlsplit

from kestrel import _core
from kestrel.datastructures import URL, Headers, QueryParams

if TYPE_CHECKING:
    from kestrel.app import App
    from kestrel.forms import FormData

try:
    import orjson

    _json_loads: Any = orjson.loads
except ImportError:  # pragma: no cover - exercised in environments without orjson
    _json_loads = json.loads

_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")


class BadRequest(ValueError):
    """The request is malformed in a way only the framework sees (answered with 400)."""


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a path; malformed escapes or non-UTF-8 bytes raise BadRequest."""
    if b"%" not in raw_path:
        return raw_path.decode("ascii")  # the parser admits only visible ASCII in a target
    if _BAD_PERCENT.search(raw_path):
        raise BadRequest("malformed percent-encoding in the request path")
    try:
        return unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request path is not UTF-8 after percent-decoding") from None


class State:
    """Free-form per-request storage for middleware: ``request.state.user = ...``."""


class Request(_core.Request):
    """One HTTP request: method, path, query, headers, cookies, client, url and the body."""

    __slots__ = (
        "_cookies",
        "_form",
        "_headers",
        "_path",
        "_query",
        "_query_string",
        "_raw_path",
        "_state",
        "app",
        "path_params",
        "route",
    )

    # Set by the router before the handler runs.
    app: App
    route: str | None  # the matched route's path template, e.g. "/users/{user_id:int}"
    path_params: dict[str, Any]

    def _split_target(self) -> None:
        target = self.target
        if target[:1] != b"/" and target != b"*":
            # absolute-form (RFC 9112 §3.2.2): the path is what follows the authority.
            parts = urlsplit(target)
            self._raw_path = parts.path or b"/"
            self._query_string = parts.query
            return
        raw_path, _, query = target.partition(b"?")
        self._raw_path = raw_path
        self._query_string = query

    @property
    def raw_path(self) -> bytes:
        """The path as sent, still percent-encoded, without the query."""
        try:
            return self._raw_path
        except AttributeError:
            self._split_target()
            return self._raw_path

    @property
    def query_string(self) -> bytes:
        try:
            return self._query_string
        except AttributeError:
            self._split_target()
            return self._query_string

    @property
    def path(self) -> str:
        """The percent-decoded path. Raises BadRequest (a 400) if it cannot be decoded."""
        try:
            return self._path
        except AttributeError:
            self._path: str = decode_path(self.raw_path)
            return self._path

    @property
    def query(self) -> QueryParams:
        try:
            return self._query
        except AttributeError:
            self._query: QueryParams = QueryParams(self.query_string.decode("latin-1"))
            return self._query

    @property
    def headers(self) -> Headers:  # type: ignore[override]
        """Case-insensitive; repeated fields kept (``headers.getlist(name)``)."""
        try:
            return self._headers
        except AttributeError:
            self._headers: Headers = Headers(self.head.headers)
            return self._headers

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies from every Cookie header; the first of a repeated name wins."""
        try:
            return self._cookies
        except AttributeError:
            cookies: dict[str, str] = {}
            for header in self.headers.getlist("cookie"):
                for pair in header.split(";"):
                    name, sep, value = pair.partition("=")
                    name = name.strip()
                    if sep and name:
                        value = value.strip()
                        if len(value) >= 2 and value[0] == value[-1] == '"':
                            value = value[1:-1]
                        cookies.setdefault(name, value)
            self._cookies: dict[str, str] = cookies
            return cookies

    @property
    def url(self) -> URL:
        host = self.headers.get("host", "")
        return URL("http", host, self.path, self.query_string.decode("latin-1"))

    @property
    def state(self) -> State:
        try:
            return self._state
        except AttributeError:
            self._state: State = State()
            return self._state

    async def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON is a 400, not a 500."""
        from kestrel.exceptions import HTTPException

        data = await self.body()
        try:
            return _json_loads(data)
        except ValueError:
            raise HTTPException(400, "the request body is not valid JSON") from None

    async def form(self) -> FormData:
        """The body as a form: urlencoded or multipart (large parts spill to temp files)."""
        try:
            return self._form
        except AttributeError:
            from kestrel.forms import parse_form

            self._form: FormData = await parse_form(self)
            return self._form

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target.decode('latin-1')!r}>"
