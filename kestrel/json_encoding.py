"""The JSON encoding of responses: orjson when installed, else the standard library with the
same compact output. A leaf module, so the core can import it for the one mapping of a handler's
result to a response (kestrel._core.to_response)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["json_dumps"]

try:
    import orjson

    json_dumps: Callable[[Any], bytes] = orjson.dumps

except ImportError:  # pragma: no cover - the standard library when orjson is absent

    def json_dumps(content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
