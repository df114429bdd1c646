"""Framing SIP messages on a byte stream (RFC 3261 §18.3, RFC 5626 §3.5.1 keep-alives).

On TCP and TLS, Content-Length is mandatory and is the only way to find where a message ends. The
framer is fed arbitrary chunks and returns whole messages. Bad input is fatal for the stream (there
is no way to resynchronise a byte stream after a framing error), so ``feed`` raises and the caller
closes that one connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

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

_CRLF_BYTES = frozenset(b"\r\n")


class _Pending(NamedTuple):
    """A head that has been framed while its body is still arriving."""

    total: int  # head + CRLFCRLF + body
    body_start: int
    item: Request | Response | ParseFailure


class StreamFramer:
    """Cuts a SIP byte stream into messages; bounds message size and header count.

    Work per byte stays constant however the sender slices its data: the search for the end of a
    head resumes where the last one stopped, and a framed head is parsed once while its body
    arrives (a peer trickling one byte at a time must not cost quadratic time).
    """

    __slots__ = ("_buf", "_max_headers", "_max_size", "_pending", "_scanned")

    def __init__(
        self,
        *,
        max_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        self._buf = bytearray()
        self._max_size = max_size
        self._max_headers = max_headers
        self._pending: _Pending | None = None
        self._scanned = 0  # bytes of _buf already searched for CRLFCRLF

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buf)

    @property
    def in_message(self) -> bool:
        """Some bytes of a message have arrived but not all of it. CRLFs between messages (§7.5,
        a keep-alive still being written) do not count: only a started message is held to the
        transport's time limit for completing it."""
        buf = self._buf
        return self._pending is not None or (len(buf) > 0 and buf[0] not in _CRLF_BYTES)

    def feed(self, data: bytes) -> list[StreamItem]:
        """Add bytes; return every message completed by them.

        Raises SipParseError (the connection must close) when the stream cannot be framed: no
        Content-Length, a bad one, or a head or message over the size limit. Messages completed
        before the bad bytes are returned first, and the error is raised by the next call.
        """
        self._buf += data
        out: list[StreamItem] = []
        while True:
            try:
                item = self._next()
            except SipParseError:
                if out:
                    # Hand over the whole messages first; the bad bytes stay buffered and raise
                    # again on the next call (``feed(b"")`` surfaces it at once).
                    return out
                raise
            if item is None:
                return out
            out.append(item)

    def _next(self) -> StreamItem | None:
        buf = self._buf
        if self._pending is None:
            if buf[:2] == b"\r\n":
                return self._leading_crlf()
            end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
            if end < 0:
                self._scanned = len(buf)
                if len(buf) > self._max_size:
                    raise MessageTooLarge(f"header section exceeds {self._max_size} bytes")
                return None
            self._pending = self._frame(bytes(buf[:end]), end + 4)
        pending = self._pending
        if len(buf) < pending.total:
            return None
        self._pending = None
        self._scanned = 0
        item = pending.item
        if not isinstance(item, ParseFailure):
            item.body = bytes(buf[pending.body_start : pending.total])
        del buf[: pending.total]
        return item

    def _leading_crlf(self) -> StreamItem | None:
        buf = self._buf
        # §7.5: CRLFs between messages are ignored; a double CRLF is a keep-alive ping.
        if buf[:4] == b"\r\n\r\n":
            del buf[:4]
            self._scanned = 0
            return KeepAlivePing()
        if len(buf) < 4 and buf.strip(b"\r\n") == b"":
            return None  # wait: it may become a ping
        del buf[:2]
        self._scanned = 0
        return self._next()

    def _frame(self, head: bytes, body_start: int) -> _Pending:
        """Parse a head once and work out where its message ends; raise if it cannot be framed."""
        try:
            msg, content_length = parse_head(head, max_headers=self._max_headers)
        except MessageTooLarge:
            raise
        except SipParseError as exc:
            # The message is bad but we may still find its end and keep the stream alive.
            length = _raw_content_length(head)
            if length is None:
                raise SipParseError(f"unframeable message on stream: {exc}") from exc
            if body_start + length > self._max_size:
                raise MessageTooLarge(f"message exceeds {self._max_size} bytes") from exc
            return _Pending(body_start + length, body_start, ParseFailure(exc, head))
        if content_length is None:
            # §18.3: on a stream Content-Length MUST be present.
            raise SipParseError("message on stream without Content-Length")
        total = body_start + content_length
        if total > self._max_size:
            raise MessageTooLarge(f"message of {total} bytes exceeds {self._max_size}")
        return _Pending(total, body_start, msg)


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
