"""Headers, query parameters and URLs, as the framework hands them to handlers.

Headers keep what the parser produced, a list of ``(name, value)`` byte pairs with names
already lowercased, and look names up case-insensitively over it. Nothing is copied or
decoded until a handler asks, so a request that never looks at its headers pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple, NoReturn, TypeVar
from urllib.parse import unquote_plus

from kestrel.types import HeaderInput, RawHeaders

T = TypeVar("T")


# Header names a program sets are few and repeat on every response: encoded once.
_NAME_CACHE: dict[str, bytes] = {}
_NAME_CACHE_LIMIT = 512


def _name(name: str | bytes) -> bytes:
    if type(name) is str:
        cached = _NAME_CACHE.get(name)
        if cached is not None:
            return cached
        encoded = name.encode("latin-1").lower()
        if len(_NAME_CACHE) < _NAME_CACHE_LIMIT:
            _NAME_CACHE[name] = encoded
        return encoded
    return (name.encode("latin-1") if isinstance(name, str) else name).lower()


def _value(value: str | bytes) -> bytes:
    data = value.encode("latin-1") if isinstance(value, str) else value
    if b"\r" in data or b"\n" in data or b"\0" in data:
        # A value with CR/LF would let a handler inject headers into the response.
        raise ValueError(f"invalid character in header value {data!r}")
    return data


class Headers(Mapping[str, str]):
    """Case-insensitive header fields that keep repeated names, in the order received.

    ``headers["accept"]`` gives the first value; ``headers.getlist("cookie")`` gives all.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: HeaderInput = None) -> None:
        if raw is None:
            self.raw: RawHeaders = []
        elif isinstance(raw, list) and all(type(n) is bytes and type(v) is bytes for n, v in raw):
            self.raw = raw  # the parser's list: names are already lowercase
        else:
            items = raw.items() if isinstance(raw, Mapping) else raw
            self.raw = [(_name(n), _value(v)) for n, v in items]

    def __getitem__(self, name: str) -> str:
        key = name.lower().encode("latin-1")
        for field, value in self.raw:
            if field == key:
                return value.decode("latin-1")
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower().encode("latin-1")
        return any(field == key for field, _ in self.raw)

    def __iter__(self) -> Iterator[str]:
        seen: set[bytes] = set()
        for field, _ in self.raw:
            if field not in seen:
                seen.add(field)
                yield field.decode("latin-1")

    def __len__(self) -> int:
        return len({field for field, _ in self.raw})

    def __bool__(self) -> bool:
        return bool(self.raw)  # not len(), which counts distinct names

    def getlist(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [value.decode("latin-1") for field, value in self.raw if field == key]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return sorted(self.raw) == sorted(other.raw)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw]
        return f"{type(self).__name__}({fields!r})"


class MutableHeaders(Headers):
    """Response headers: ``headers[name] = value`` replaces, ``append`` adds another field."""

    __slots__ = ()

    def __setitem__(self, name: str, value: str) -> None:
        key = _NAME_CACHE.get(name) or _name(name)
        if type(value) is str and value.isprintable():
            data = value.encode("latin-1")  # printable: no CR, LF or NUL to refuse
        else:
            data = _value(value)
        raw = self.raw
        if raw:  # (a response's first header, often its only one, skips making the iterator)
            for i, (field, _) in enumerate(raw):
                if field == key:
                    raw[i] = (key, data)
                    # Later duplicates go: assignment means "this is the value".
                    raw[i + 1 :] = [item for item in raw[i + 1 :] if item[0] != key]
                    return
        raw.append((key, data))

    def __delitem__(self, name: str) -> None:
        key = _name(name)
        kept = [item for item in self.raw if item[0] != key]
        if len(kept) == len(self.raw):
            raise KeyError(name)
        self.raw[:] = kept

    def append(self, name: str, value: str) -> None:
        self.raw.append((_name(name), _value(value)))

    def setdefault(self, name: str, value: str) -> str:
        if name in self:
            return self[name]
        self[name] = value
        return value

    def update(self, other: HeaderInput) -> None:
        for name, value in Headers(other).raw:
            self[name.decode("latin-1")] = value.decode("latin-1")


class QueryParams(dict[str, str]):
    """The query string as a read-only multi-dict: ``q["a"]`` and ``q.get("a")`` give the
    first value, ``q.getlist("a")`` all of them, ``q.multi_items()`` every pair in order.

    A dict of first values underneath, so reading it is a C dict lookup; every method that
    would change it raises TypeError.
    """

    __slots__ = ("_items",)

    def __init__(self, query: str | bytes | Iterable[tuple[str, str]] = "") -> None:
        if isinstance(query, bytes):
            query = query.decode("latin-1")
        items = parse_query(query) if isinstance(query, str) else list(query)
        self._items: list[tuple[str, str]] = items
        # Filled back to front, so that the first of a repeated key is the one kept.
        dict.update(self, reversed(items))

    @classmethod
    def from_query_string(cls, query: str) -> QueryParams:
        """What Request.query builds per request: straight from the decoded string."""
        params = dict.__new__(cls)
        items = params._items = parse_query(query)
        dict.update(params, reversed(items) if len(items) > 1 else items)
        return params

    def getlist(self, key: str) -> list[str]:
        return [value for name, value in self._items if name == key]

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"QueryParams({self._items!r})"

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("QueryParams is read-only; copy it with dict(query) to change it")

    __setitem__ = __delitem__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only


def parse_query(query: str) -> list[tuple[str, str]]:
    """``a=1&b=x+y&a=2`` -> [("a", "1"), ("b", "x y"), ("a", "2")]; blanks are kept.

    Undecodable UTF-8 after percent-decoding becomes U+FFFD rather than an error: a query
    string is data for the handler to judge, unlike the path the router matches.
    """
    items = []
    if "%" not in query and "+" not in query:
        for part in query.split("&"):
            if part:
                key, _, value = part.partition("=")
                items.append((key, value))
        return items
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            items.append((unquote_plus(key), unquote_plus(value)))
    return items


class URL(NamedTuple):
    """The URL a request was made to, rebuilt from the Host header and the request target."""

    scheme: str
    host: str
    path: str
    query: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}" + (f"?{self.query}" if self.query else "")
