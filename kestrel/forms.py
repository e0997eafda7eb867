"""Form bodies: what ``await request.form()`` returns.

Two encodings are understood:

- ``application/x-www-form-urlencoded``: the body is read whole (the request's body limit
  bounds it) and split like a query string, blank values kept.
- ``multipart/form-data`` (RFC 7578): the body is read as a stream and fed chunk by chunk to
  python-multipart's ``MultipartParser``. Text fields are collected in memory up to a size
  limit; file parts go to an ``UploadFile`` whose data stays in memory up to a threshold and
  spills to an anonymous temporary file beyond it. A large upload therefore never sits in
  memory whole.

Everything the client can get wrong is a 4xx ``HTTPException``, never a 500: a malformed
multipart body, a missing boundary, too many fields or files, an oversized text field or
undecodable text is a 400, a body that is not a form a 415. A body over the request's size
limit makes the stream raise ``HttpParseError`` (413), which is left for the engine to answer.

``parse_form`` needs only the request's headers and its body as an async stream of bytes,
so this module knows nothing of the Request class (request.py imports it, not the reverse)
and any host with a byte stream can use it. Limits can be set per call
(``await parse_form(request.headers, request.stream(), max_files=1)``) or for the whole
process by assigning the module defaults (``kestrel.forms.MAX_FIELDS = 5000``), which is
what ``request.form()`` uses.

Uploads hold temporary files: close them (``await form.aclose()``) when the handler is done
with them rather than waiting for garbage collection.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar, overload
from urllib.parse import parse_qsl, unquote_to_bytes

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from kestrel.datastructures import Headers
from kestrel.exceptions import HTTPException

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = [
    "MAX_FIELDS",
    "MAX_FILES",
    "MAX_PART_SIZE",
    "SPOOL_THRESHOLD",
    "FormData",
    "UploadFile",
    "parse_form",
]

T = TypeVar("T")

MAX_FIELDS = 1000  # text fields per form (urlencoded pairs or multipart non-file parts)
MAX_FILES = 1000  # file parts per multipart form
MAX_PART_SIZE = 1024 * 1024  # bytes in one multipart text field; files are not limited here
SPOOL_THRESHOLD = 1024 * 1024  # bytes of one upload kept in memory before it moves to disk

URLENCODED = b"application/x-www-form-urlencoded"
MULTIPART = b"multipart/form-data"


class UploadFile:
    """One uploaded file: what the client said about it, and its content.

    ``file`` is a ``tempfile.SpooledTemporaryFile``: the content stays in memory up to
    ``spool_threshold`` bytes and moves to an anonymous temporary file on disk beyond that,
    so an upload of any size costs bounded memory. The async methods run the blocking file
    call in a thread once the data is on disk (a slow disk must not stall the event loop) and
    inline while it is in memory (there a thread hop costs more than the copy).
    """

    __slots__ = ("_threshold", "content_type", "file", "filename", "headers", "size")

    def __init__(
        self,
        filename: str,
        *,
        content_type: str | None = None,
        headers: Headers | None = None,
        spool_threshold: int | None = None,
    ) -> None:
        self.filename = filename  # as the client sent it (may be empty); never trust it as a path
        self.content_type = content_type  # the part's Content-Type, None if it sent none
        self.headers = headers if headers is not None else Headers()
        self.size = 0  # bytes written through write()
        self._threshold = SPOOL_THRESHOLD if spool_threshold is None else spool_threshold
        # Outlives this call by design: close() (or FormData.aclose()) closes it.
        self.file: tempfile.SpooledTemporaryFile[bytes]
        self.file = tempfile.SpooledTemporaryFile(max_size=self._threshold)  # noqa: SIM115

    @property
    def in_memory(self) -> bool:
        """True while the content is still held in memory (not yet rolled over to disk)."""
        # SpooledTemporaryFile has no public flag for this; `_rolled` has been set on rollover
        # since Python 2. Without it, assume disk: a needless thread hop is the safe mistake.
        return not getattr(self.file, "_rolled", True)

    async def write(self, data: bytes) -> None:
        """Append `data`; the write that crosses the threshold copies it all to disk."""
        if self.in_memory and self.file.tell() + len(data) <= self._threshold:
            self.file.write(data)
        else:
            await asyncio.to_thread(self.file.write, data)
        self.size += len(data)

    async def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes from the current position (-1: to the end)."""
        if self.in_memory:
            return self.file.read(size)
        return await asyncio.to_thread(self.file.read, size)

    async def seek(self, offset: int) -> None:
        """Move to byte `offset` from the start (``await upload.seek(0)`` to read again)."""
        if self.in_memory:
            self.file.seek(offset)
        else:
            await asyncio.to_thread(self.file.seek, offset)

    async def close(self) -> None:
        """Close the file; a temporary file on disk is deleted."""
        if self.in_memory:
            self.file.close()
        else:
            await asyncio.to_thread(self.file.close)

    def __repr__(self) -> str:
        return (
            f"UploadFile(filename={self.filename!r}, content_type={self.content_type!r}, "
            f"size={self.size})"
        )


FormValue = str | UploadFile


class FormData(Mapping[str, FormValue]):
    """A parsed form: an immutable multi-dict of field names to text or UploadFile.

    ``form["name"]`` is the first value sent under that name, ``form.getlist("name")`` all of
    them, ``form.multi_items()`` every (name, value) pair in the order received.
    """

    __slots__ = ("_first", "_items")

    def __init__(self, items: Iterable[tuple[str, FormValue]] = ()) -> None:
        self._items: tuple[tuple[str, FormValue], ...] = tuple(items)
        first: dict[str, FormValue] = {}
        for name, value in self._items:
            first.setdefault(name, value)
        self._first = first

    def __getitem__(self, name: str) -> FormValue:
        return self._first[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    @overload
    def get(self, name: str) -> FormValue | None: ...
    @overload
    def get(self, name: str, default: FormValue | T) -> FormValue | T: ...
    def get(self, name: str, default: object = None) -> object:
        return self._first.get(name, default)

    def getlist(self, name: str) -> list[FormValue]:
        return [value for key, value in self._items if key == name]

    def multi_items(self) -> list[tuple[str, FormValue]]:
        return list(self._items)

    def uploads(self) -> list[UploadFile]:
        """Every UploadFile in the form, in the order received."""
        return [value for _, value in self._items if isinstance(value, UploadFile)]

    def close(self) -> None:
        """Close every upload now, from synchronous code (e.g. a plain ``def`` handler)."""
        for upload in self.uploads():
            upload.file.close()

    async def aclose(self) -> None:
        """Close every upload, without blocking the event loop on disk files."""
        for upload in self.uploads():
            await upload.close()

    def __repr__(self) -> str:
        return f"FormData({list(self._items)!r})"


async def parse_form(
    headers: Mapping[str, str],
    stream: AsyncIterable[bytes],
    *,
    read_body: Callable[[], Awaitable[bytes]] | None = None,
    max_fields: int | None = None,
    max_files: int | None = None,
    max_part_size: int | None = None,
    spool_threshold: int | None = None,
) -> FormData:
    """Parse a request body as a form (urlencoded or multipart) into FormData.

    `headers` are the request's (only ``content-type`` is read, by that lower-case name,
    which kestrel's Headers match in any case) and `stream` its body, chunk by chunk. A
    multipart body is parsed as it streams. A urlencoded one is read whole, with
    `read_body` if given, else by joining the stream: ``request.form()`` passes
    ``request.body``, which keeps the bytes for a later ``request.body()`` and serves a body
    read before.

    Each limit left as None takes the module default (MAX_FIELDS, MAX_FILES, MAX_PART_SIZE,
    SPOOL_THRESHOLD), read at call time so that an application can change it once. Raises
    HTTPException(400) for a malformed or over-limit form and HTTPException(415) for a body
    that is not a form; ``HttpParseError`` (413) from the body stream passes through.

    ``request.form()`` calls this and caches the result; calling it directly parses anew
    (the body can be read only once) and does not fill that cache.
    """
    try:
        return await _parse_form(
            headers,
            stream,
            read_body,
            max_fields=MAX_FIELDS if max_fields is None else max_fields,
            max_files=MAX_FILES if max_files is None else max_files,
            max_part_size=MAX_PART_SIZE if max_part_size is None else max_part_size,
            spool_threshold=SPOOL_THRESHOLD if spool_threshold is None else spool_threshold,
        )
    finally:
        # Close the stream whether it was read through, cut short or never started (a 415,
        # a urlencoded body read with read_body): the core's body stream is a compiled async
        # generator, which warns when it is collected unstarted.
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def _parse_form(
    headers: Mapping[str, str],
    stream: AsyncIterable[bytes],
    read_body: Callable[[], Awaitable[bytes]] | None,
    *,
    max_fields: int,
    max_files: int,
    max_part_size: int,
    spool_threshold: int,
) -> FormData:
    content_type = headers.get("content-type", "")
    media_type, options = parse_options_header(content_type)
    if media_type == URLENCODED:
        body = await read_body() if read_body is not None else await _read_all(stream)
        return _parse_urlencoded(body, max_fields)
    if media_type == MULTIPART:
        boundary = options.get(b"boundary")
        if not boundary:
            raise HTTPException(400, "multipart/form-data without a boundary parameter")
        reader = _MultipartReader(
            boundary,
            max_fields=max_fields,
            max_files=max_files,
            max_part_size=max_part_size,
            spool_threshold=spool_threshold,
        )
        try:
            async for chunk in stream:
                await reader.feed(chunk)
            return await reader.finish()
        except BaseException:
            # Whatever went wrong (a bad body, 413, a disconnect, cancellation), the uploads
            # made so far are nobody's: release their files now. Synchronously, because a
            # cancelled task cannot be relied on to await a thread.
            reader.discard()
            raise
    shown = content_type or "no Content-Type"
    raise HTTPException(
        415,
        "expected a form body (application/x-www-form-urlencoded or multipart/form-data), "
        f"got {shown}",
    )


async def _read_all(stream: AsyncIterable[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


def _parse_urlencoded(body: bytes, max_fields: int) -> FormData:
    try:
        # Decode first: parse_qsl would reject raw non-ASCII bytes outright, and a form's
        # text is UTF-8 (the WHATWG encoding browsers use).
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=max_fields,
            encoding="utf-8",
            errors="strict",
        )
    except UnicodeDecodeError:  # before ValueError, which it subclasses
        raise HTTPException(400, "the form body is not valid UTF-8") from None
    except ValueError:  # parse_qsl's only other complaint: more than max_num_fields
        raise HTTPException(400, f"the form has more than {max_fields} fields") from None
    return FormData(pairs)


# What MultipartParser's callbacks report, queued for _MultipartReader.feed to act on.
_PART_BEGIN, _HEADER_FIELD, _HEADER_VALUE, _HEADER_END = 0, 1, 2, 3
_HEADERS_FINISHED, _PART_DATA, _PART_END, _END = 4, 5, 6, 7

# RFC 5987 ext-value (charset'language'pct-encoded); its grammar has no ';', quote or space.
_EXT_FILENAME = re.compile(rb"(?:^|;)[ \t]*filename\*[ \t]*=[ \t]*([^;\s\"]+)", re.IGNORECASE)


class _MultipartReader:
    """One multipart/form-data body being parsed into fields and uploads.

    MultipartParser calls back synchronously from inside ``write``, but writing an upload to
    disk has to be awaited. So the callbacks only queue events, and ``feed`` applies them
    after each chunk, where it can await. The queue holds at most one chunk's worth.
    """

    def __init__(
        self,
        boundary: bytes,
        *,
        max_fields: int,
        max_files: int,
        max_part_size: int,
        spool_threshold: int,
    ) -> None:
        self.max_fields = max_fields
        self.max_files = max_files
        self.max_part_size = max_part_size
        self.spool_threshold = spool_threshold
        self.events: list[tuple[int, bytes]] = []
        self.items: list[tuple[str, FormValue]] = []
        self.uploads: list[UploadFile] = []  # every one created, to close them on failure
        self.fields = 0
        self.complete = False
        # The part being read.
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.part_headers: list[tuple[bytes, bytes]] = []
        self.name = ""
        self.value = bytearray()
        self.upload: UploadFile | None = None

        queue = self.events.append
        callbacks: MultipartCallbacks = {
            "on_part_begin": lambda: queue((_PART_BEGIN, b"")),
            "on_header_field": lambda data, start, end: queue((_HEADER_FIELD, data[start:end])),
            "on_header_value": lambda data, start, end: queue((_HEADER_VALUE, data[start:end])),
            "on_header_end": lambda: queue((_HEADER_END, b"")),
            "on_headers_finished": lambda: queue((_HEADERS_FINISHED, b"")),
            "on_part_data": lambda data, start, end: queue((_PART_DATA, data[start:end])),
            "on_part_end": lambda: queue((_PART_END, b"")),
            "on_end": lambda: queue((_END, b"")),
        }
        try:
            self.parser = MultipartParser(boundary, callbacks)
        except FormParserError as exc:  # e.g. an overlong boundary
            raise HTTPException(400, f"bad multipart boundary: {exc}") from None

    async def feed(self, chunk: bytes) -> None:
        """Parse one chunk of the body and store what it completes."""
        try:
            self.parser.write(chunk)
        except FormParserError as exc:
            raise HTTPException(400, f"malformed multipart body: {exc}") from None
        events = self.events[:]
        self.events.clear()  # in place: the callbacks hold its bound append
        for kind, data in events:
            if kind == _PART_DATA:
                await self._part_data(data)
            elif kind == _HEADER_FIELD:
                self.header_field += data
            elif kind == _HEADER_VALUE:
                self.header_value += data
            elif kind == _HEADER_END:
                name = bytes(self.header_field).strip().lower()
                self.part_headers.append((name, bytes(self.header_value).strip(b" \t")))
                self.header_field.clear()
                self.header_value.clear()
            elif kind == _HEADERS_FINISHED:
                self._start_part()
            elif kind == _PART_END:
                self._end_part()
            elif kind == _PART_BEGIN:
                self.part_headers = []
                self.value.clear()
                self.upload = None
            else:  # _END
                self.complete = True

    async def finish(self) -> FormData:
        """The form, once the whole body has been fed; a body cut short is a 400."""
        self.parser.finalize()
        if not self.complete:
            raise HTTPException(400, "malformed multipart body: no closing boundary")
        for upload in self.uploads:
            await upload.seek(0)  # ready for the handler to read from the start
        return FormData(self.items)

    def discard(self) -> None:
        """Close every upload created so far (the parse failed)."""
        for upload in self.uploads:
            upload.file.close()

    def _start_part(self) -> None:
        """A part's headers are complete: decide whether it is a text field or a file."""
        headers = Headers(self.part_headers)
        disposition = next((v for n, v in self.part_headers if n == b"content-disposition"), None)
        if disposition is None:
            raise HTTPException(400, "a multipart part has no Content-Disposition header")
        kind, params = parse_options_header(disposition.decode("latin-1"))
        name = params.get(b"name")
        if kind != b"form-data" or name is None:
            raise HTTPException(400, 'a multipart part is not "form-data" with a name')
        self.name = _utf8(name, "a field name")
        filename = _ext_filename(disposition)
        if filename is None and b"filename" in params:
            filename = _utf8(params[b"filename"], "a filename")
        if filename is None:
            self.fields += 1
            if self.fields > self.max_fields:
                raise HTTPException(400, f"the form has more than {self.max_fields} fields")
            return
        if len(self.uploads) >= self.max_files:
            raise HTTPException(400, f"the form has more than {self.max_files} files")
        content_type = headers.get("content-type")
        self.upload = UploadFile(
            filename,
            content_type=content_type,
            headers=headers,
            spool_threshold=self.spool_threshold,
        )
        self.uploads.append(self.upload)

    async def _part_data(self, data: bytes) -> None:
        if self.upload is not None:
            await self.upload.write(data)
            return
        self.value += data
        if len(self.value) > self.max_part_size:
            raise HTTPException(400, f"form field {self.name!r} is over {self.max_part_size} bytes")

    def _end_part(self) -> None:
        if self.upload is not None:
            self.items.append((self.name, self.upload))
            self.upload = None
        else:
            self.items.append((self.name, _utf8(bytes(self.value), f"field {self.name!r}")))
        self.value.clear()


def _utf8(data: bytes, what: str) -> str:
    """Decode client text as UTF-8 (what browsers send); anything else is the client's 400."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, f"{what} in the form is not valid UTF-8") from None


def _ext_filename(disposition: bytes) -> str | None:
    """The RFC 5987 ``filename*=UTF-8''caf%C3%A9.txt`` value, if the part sent one.

    RFC 7578 tells senders not to use it, but some do, and when present it is the exact
    name (the plain ``filename`` beside it is an ASCII fallback). An unknown charset is
    ignored, so the plain filename applies.
    """
    match = _EXT_FILENAME.search(disposition)
    if match is None:
        return None
    charset, _, rest = match.group(1).partition(b"'")
    _language, quote, encoded = rest.partition(b"'")
    charset = charset.lower()
    if not quote or charset not in (b"utf-8", b"iso-8859-1"):
        return None
    if charset == b"iso-8859-1":
        return unquote_to_bytes(encoded).decode("latin-1")
    return _utf8(unquote_to_bytes(encoded), "a filename")
