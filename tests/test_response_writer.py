"""The response writer alone, with no socket: the exact head it builds for each response, and
every response it must refuse (kestrel/response_writer.pxi).

Every path that answers a request goes through this writer: a handler's Response, streamed
and file responses, error pages and rejections. tests/test_response_framing.py holds the same
rules over a real connection.
"""

from __future__ import annotations

from typing import Any

import pytest

from kestrel._core import InvalidResponseError, new_response_writer

Head = tuple[bytes, str, int, bool, bool]


def head(status: int = 200, **options: Any) -> Head:
    """The head and decision of the writer, Date line removed (it changes every second)."""
    raw, framing, length, close, send_body = new_response_writer().format_head(status, **options)
    lines = [line for line in raw.split(b"\r\n") if not line.startswith(b"date: ")]
    return b"\r\n".join(lines), framing, length, close, send_body


def fields(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n")[1:-2]


def test_plain_response() -> None:
    raw, framing, length, close, send_body = head(
        200, content_type=b"text/plain", body_length=5, headers=[(b"x-a", b"1")]
    )
    assert raw == (
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-type: text/plain\r\nserver: kestrel\r\n"
        b"content-length: 5\r\n\r\n"
    )
    assert (framing, length, close, send_body) == ("length", 5, False, True)


@pytest.mark.parametrize(
    "headers",
    [
        {"content-length": "5"},
        [(b"Content-Length", b"5"), (b"content-length", b"5")],  # repeated, same value
    ],
)
def test_an_apps_matching_content_length_is_sent_once(headers: Any) -> None:
    raw, framing, length, _, _ = head(headers=headers, body_length=5)
    assert raw.lower().count(b"content-length") == 1
    assert (framing, length) == ("length", 5)


@pytest.mark.parametrize(
    ("headers", "body_length"),
    [
        ({"content-length": "4"}, 5),  # contradicts the body
        ({"content-length": "0"}, 5),
        ([(b"content-length", b"5"), (b"content-length", b"6")], 5),  # two values
        ({"content-length": "-5"}, 5),
        ({"content-length": "5 "}, 5),
        ({"content-length": "0x5"}, 5),
        ({"content-length": "1" * 19}, 5),
        ({"transfer-encoding": "gzip"}, 5),  # a coding the server does not apply
        ({"transfer-encoding": "gzip, chunked"}, -1),
        ({"transfer-encoding": "chunked", "content-length": "5"}, 5),  # two framings
        ({"transfer-encoding": "chunked", "content-length": "5"}, -1),
    ],
)
def test_framing_that_contradicts_the_body_is_refused(headers: Any, body_length: int) -> None:
    writer = new_response_writer()
    with pytest.raises(InvalidResponseError):
        writer.format_head(200, headers=headers, body_length=body_length)


def test_an_apps_chunked_on_a_complete_body_is_framed_by_its_length() -> None:
    raw, framing, length, _, _ = head(headers={"transfer-encoding": "chunked"}, body_length=5)
    assert b"transfer-encoding" not in raw
    assert (framing, length) == ("length", 5)


def test_streams_chunked_declared_or_close_delimited() -> None:
    raw, framing, length, close, _ = head(body_length=-1)
    assert b"transfer-encoding: chunked\r\n" in raw and b"content-length" not in raw
    assert (framing, length, close) == ("chunked", -1, False)
    raw, framing, length, close, _ = head(body_length=-1, headers={"Content-Length": "7"})
    assert b"content-length: 7\r\n" in raw and b"transfer-encoding" not in raw
    assert (framing, length, close) == ("length", 7, False)
    raw, framing, _, _, _ = head(body_length=-1, headers={"transfer-encoding": "Chunked"})
    assert raw.count(b"transfer-encoding") == 1 and framing == "chunked"
    # An HTTP/1.0 client takes no chunks: the body ends with the connection.
    raw, framing, _, close, _ = head(body_length=-1, http_version="1.0")
    assert b"transfer-encoding" not in raw and b"content-length" not in raw
    assert (framing, close) == ("close", True)
    assert b"connection: close\r\n" in raw


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    raw, framing, _, _, send_body = head(status, body_length=3)
    assert b"content-length" not in raw and b"transfer-encoding" not in raw
    assert (framing, send_body) == ("none", False)


@pytest.mark.parametrize("framing", [{"content-length": "3"}, {"transfer-encoding": "chunked"}])
def test_no_framing_fields_on_204_whatever_the_app_says(framing: dict[str, str]) -> None:
    raw, _, _, _, _ = head(204, headers=framing, body_length=0)
    assert b"content-length" not in raw.lower() and b"transfer-encoding" not in raw.lower()


def test_a_304_keeps_the_apps_content_length() -> None:
    # It describes the representation the 304 stands for (RFC 9110 §8.6).
    raw, framing, _, _, send_body = head(304, headers={"content-length": "42"}, body_length=0)
    assert b"content-length: 42\r\n" in raw
    assert (framing, send_body) == ("none", False)


def test_head_keeps_the_length_and_sends_no_body() -> None:
    raw, framing, length, _, send_body = head(method="HEAD", body_length=5)
    assert b"content-length: 5\r\n" in raw
    assert (framing, length, send_body) == ("length", 5, False)
    # A HEAD answer with an empty body may carry the GET's length.
    raw, _, length, _, _ = head(method="HEAD", headers={"content-length": "99"}, body_length=0)
    assert b"content-length: 99\r\n" in raw and length == 99


@pytest.mark.parametrize("status", [100, 101, 103, 199])
def test_an_interim_status_is_not_a_final_response(status: int) -> None:
    with pytest.raises(InvalidResponseError):
        new_response_writer().format_head(status)


@pytest.mark.parametrize("status", [0, 99, 1000, -200])
def test_an_impossible_status_is_refused(status: int) -> None:
    with pytest.raises(InvalidResponseError):
        new_response_writer().format_head(status)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-evil": "a\r\nSet-Cookie: injected=1"},
        {"x-evil": "a\nb"},
        {"x-evil": "a\rb"},
        {"x-evil": "a\x00b"},
        {"x-evil": "a\x7fb"},
        {"x-evil": "a\x1bb"},
        {"x-evil": " leading"},
        {"x-evil": "trailing\t"},
        {"x evil": "1"},
        {"x:evil": "1"},
        {"": "1"},
        {"x-evil\r\nset-cookie": "1"},
        {"ünïcode": "1"},
        [(b"x-a", 1)],
        {"x-name": "snowman \u2603"},  # not Latin-1
    ],
)
def test_invalid_names_and_values_are_refused(headers: Any) -> None:
    with pytest.raises(InvalidResponseError):
        new_response_writer().format_head(200, headers=headers, body_length=0)


def test_valid_values_pass_as_given() -> None:
    raw, _, _, _, _ = head(
        headers=[
            (b"x-tab", b"a\tb"),
            (b"x-obs-text", "caf\xe9".encode("latin-1")),
            (b"x-empty", b""),
            ("x-str", "a, b; q=1"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ],
        body_length=0,
    )
    assert fields(raw)[:6] == [
        b"x-tab: a\tb",
        b"x-obs-text: caf\xe9",
        b"x-empty: ",
        b"x-str: a, b; q=1",
        b"set-cookie: a=1",
        b"set-cookie: b=2",
    ]


def test_an_invalid_content_type_is_refused() -> None:
    with pytest.raises(InvalidResponseError):
        new_response_writer().format_head(200, content_type="text/html\r\nx: y")


def test_nothing_of_a_refused_head_is_left_in_the_buffer() -> None:
    writer = new_response_writer()
    with pytest.raises(InvalidResponseError):
        writer.format_head(200, headers=[(b"x-ok", b"1"), (b"x-bad", b"\n")])
    raw, _, _, _, _ = writer.format_head(200, body_length=0)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and b"x-ok" not in raw


def test_connection_close_is_honoured_and_hop_by_hop_fields_are_the_servers() -> None:
    raw, _, _, close, _ = head(
        headers={
            "Connection": "keep-alive, Close",
            "keep-alive": "timeout=5",
            "proxy-connection": "keep-alive",
            "te": "trailers",
            "upgrade": "h2c",
        },
        body_length=0,
    )
    assert close
    assert [f for f in fields(raw) if not f.startswith((b"server", b"content-length"))] == [
        b"connection: close"
    ]
    raw, _, _, close, _ = head(headers={"connection": "keep-alive"}, body_length=0)
    assert not close and b"connection" not in raw


def test_the_servers_keep_alive_decision() -> None:
    raw, _, _, close, _ = head(keep_alive=False, body_length=0)
    assert close and raw.endswith(b"connection: close\r\n\r\n")
    raw, _, _, close, _ = head(http_version="1.0", body_length=0)
    assert not close and raw.endswith(b"connection: keep-alive\r\n\r\n")


def test_an_apps_content_type_date_and_server_replace_the_servers() -> None:
    raw, _, _, _, _ = head(
        headers={"Content-Type": "text/html", "Server": "mine", "Date": "yesterday"},
        content_type=b"text/plain",
        body_length=0,
    )
    assert fields(raw) == [
        b"Content-Type: text/html",
        b"Server: mine",
        b"Date: yesterday",
        b"content-length: 0",
    ]
    raw, _, _, _, _ = head(headers={"server": "mine"}, body_length=0)
    assert raw.count(b"server") == 1


def test_headers_as_a_dict_a_list_or_mutable_headers() -> None:
    from kestrel.datastructures import MutableHeaders

    mutable = MutableHeaders()
    mutable["x-a"] = "1"
    for given in ({"x-a": "1"}, [(b"x-a", b"1")], [("x-a", "1")], mutable):
        raw, _, _, _, _ = head(headers=given, body_length=0)
        assert fields(raw)[0] == b"x-a: 1", given
