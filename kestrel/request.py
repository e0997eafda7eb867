"""The request a handler receives.

It is the engine's request object itself (the framework asks the engine to create this
subclass), so the framework adds no allocation per request. Everything here is computed on
first use and cached in the core request's fields: a handler that never looks at the query
string never parses it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kestrel import _core
from kestrel._core import BadRequest
from kestrel.datastructures import URL, Headers, QueryParams

__all__ = ["BadRequest", "Request", "State"]

if TYPE_CHECKING:
    from kestrel.app import App
    from kestrel.forms import FormData

try:
    import orjson

    _json_loads: Any = orjson.loads
except ImportError:  # pragma: no cover - exercised in environments without orjson
    _json_loads = json.loads


class State:
    """Free-form per-request storage for middleware: ``request.state.user = ...``."""


class Request(_core.Request):
    """One HTTP request: method, path, query, headers, cookies, client, url and the body.

    From the core: ``method``, ``target``, ``http_version``, ``raw_path``, ``query_string``,
    ``path`` (percent-decoded in C; BadRequest, a 400, if it does not decode),
    ``content_length``, ``client``, ``max_body_size``, ``stream()`` and ``body()``. The
    router sets ``app``, ``route`` (the matched path template) and ``path_params``.
    """

    __slots__ = ()  # every per-request field is a C field of the core Request

    app: App
    route: str | None
    path_params: dict[str, Any]

    @property
    def query(self) -> QueryParams:
        query: QueryParams | None = self._query
        if query is None:
            query = _core.split_query(self.query_string)  # None if it needs decoding
            if query is None:
                query = QueryParams.from_query_string(self.query_string.decode("latin-1"))
            self._query = query
        return query

    @property
    def headers(self) -> Headers:  # type: ignore[override]
        """Case-insensitive; repeated fields kept (``headers.getlist(name)``)."""
        headers: Headers | None = self._headers
        if headers is None:
            headers = self._headers = Headers(self.head.headers)
        return headers

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies from every Cookie header; the first of a repeated name wins."""
        if self._cookies is not None:
            return self._cookies  # type: ignore[no-any-return]
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
        self._cookies = cookies
        return cookies

    @property
    def url(self) -> URL:
        host = self.headers.get("host", "")
        return URL("http", host, self.path, self.query_string.decode("latin-1"))

    @property
    def state(self) -> State:
        state: State | None = self._state
        if state is None:
            state = self._state = State()
        return state

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
        form: FormData | None = self._form
        if form is None:
            # Imported on first use, as before: python-multipart is an import that most
            # apps, which read no forms, need not pay for.
            from kestrel.forms import parse_form

            form = self._form = await parse_form(self.headers, self.stream(), read_body=self.body)
        return form
