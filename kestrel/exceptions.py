"""Exceptions a handler raises to answer with an error status."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from kestrel._core import BodyConsumedError, ClientDisconnect, HttpParseError

__all__ = ["BodyConsumedError", "ClientDisconnect", "HTTPException", "HttpParseError"]


class HTTPException(Exception):
    """Stop handling and answer with `status`.

    `detail` is the body: a str is sent as text/plain, a dict or list as JSON; by default the
    status's reason phrase. `headers` are added to the response (e.g. WWW-Authenticate).
    """

    def __init__(
        self,
        status: int,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not 100 <= status <= 599:
            raise ValueError(f"HTTPException needs a status from 100 to 599, not {status}")
        if detail is None:
            try:
                detail = HTTPStatus(status).phrase
            except ValueError:
                detail = ""
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.headers = headers

    @property
    def status_code(self) -> int:
        return self.status

    def __repr__(self) -> str:
        return f"HTTPException({self.status}, {self.detail!r})"
