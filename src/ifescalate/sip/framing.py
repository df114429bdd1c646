"""Framing SIP messages on a byte stream (RFC 3261 §18.3, RFC 5626 §3.5.1 keep-alives).

On TCP and TLS, Content-Length is mandatory and is the only way to find where a message ends. The
framer is fed arbitrary chunks and returns whole messages. Bad input is fatal for the stream (there
is no way to resynchronise a byte stream after a framing error), so ``feed`` raises and the caller
closes that one connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MessageTooLarge, SipParseError
from .message import (
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_MESSAGE_SIZE,
    Request,
    Response,
    parse_head,
)


@dataclass(frozen=True, slots=True)
class KeepAlivePing:
    """A CRLFCRLF ping (RFC 5626 §3.5.1); the answer is a single CRLF pong."""


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """A message whose framing was sound but whose head did not parse.

    The stream can go on (the length was known), and the caller may answer 400 from ``head``.
    """

    error: SipParseError
    head: bytes


StreamItem = Request | Response | KeepAlivePing | ParseFailure


class StreamFramer:
    """Cuts a SIP byte stream into messages; bounds message size and header count."""

    __slots__ = ("_buf", "_max_headers", "_max_size")

    def __init__(
        self,
        *,
        max_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        self._buf = bytearray()
        self._max_size = max_size
        self._max_headers = max_headers

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[StreamItem]:
        """Add bytes; return every message completed by them.

        Raises SipParseError (the connection must close) when the stream cannot be framed: no
        Content-Length, a bad one, or a head or message over the size limit.
        """
        self._buf += data
        out: list[StreamItem] = []
        while True:
            item = self._next()
            if item is None:
                return out
            out.append(item)

    def _next(self) -> StreamItem | None:
        buf = self._buf
        # §7.5: CRLFs between messages are ignored; a double CRLF is a keep-alive ping.
        if buf[:2] == b"\r\n":
            if buf[:4] == b"\r\n\r\n":
                del buf[:4]
                return KeepAlivePing()
            if len(buf) < 4 and buf.strip(b"\r\n") == b"":
                return None  # wait: it may become a ping
            del buf[:2]
            return self._next()
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self._max_size:
                raise MessageTooLarge(f"header section exceeds {self._max_size} bytes")
            return None
        head = bytes(buf[:end])
        try:
            msg, content_length = parse_head(head, max_headers=self._max_headers)
        except MessageTooLarge:
            raise
        except SipParseError as exc:
            # The message is bad but we may still find its end and keep the stream alive.
            length = _raw_content_length(head)
            if length is None:
                raise SipParseError(f"unframeable message on stream: {exc}") from exc
            if end + 4 + length > self._max_size:
                raise MessageTooLarge(f"message exceeds {self._max_size} bytes") from exc
            if len(buf) < end + 4 + length:
                return None
            del buf[: end + 4 + length]
            return ParseFailure(exc, head)
        if content_length is None:
            # §18.3: on a stream Content-Length MUST be present.
            raise SipParseError("message on stream without Content-Length")
        total = end + 4 + content_length
        if total > self._max_size:
            raise MessageTooLarge(f"message of {total} bytes exceeds {self._max_size}")
        if len(buf) < total:
            return None
        msg.body = bytes(buf[end + 4 : total])
        del buf[:total]
        return msg


def _raw_content_length(head: bytes) -> int | None:
    """Find Content-Length in a head that failed to parse, to skip past its body."""
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in (b"content-length", b"l"):
            value = value.strip()
            if value.isdigit() and len(value) <= 9:
                return int(value)
            return None
    return None
