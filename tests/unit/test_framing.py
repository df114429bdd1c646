"""sip.framing.StreamFramer: cutting a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3)."""

from __future__ import annotations

import time

import pytest

from ifescalate.sip.errors import MessageTooLarge, SipParseError
from ifescalate.sip.framing import KeepAlivePing, ParseFailure, StreamFramer
from ifescalate.sip.message import Request, Response


def _options(n: int, body: bytes = b"") -> bytes:
    head = (
        f"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK-{n}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:alice@example.com>;tag=a{n}\r\n"
        f"To: <sip:bob@example.com>\r\n"
        f"Call-ID: call-{n}@192.0.2.1\r\n"
        f"CSeq: {n} OPTIONS\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


RESPONSE = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK-9\r\n"
    b"From: <sip:alice@example.com>;tag=a9\r\n"
    b"To: <sip:bob@example.com>;tag=b9\r\n"
    b"Call-ID: call-9@192.0.2.1\r\n"
    b"CSeq: 9 OPTIONS\r\n"
    b"l: 5\r\n\r\n"
    b"hello"
)


def test_byte_by_byte_yields_the_message_only_on_its_last_byte() -> None:
    framer = StreamFramer()
    data = _options(1, b"v=0\r\n")
    seen: list[object] = []
    for i in range(len(data)):
        got = framer.feed(data[i : i + 1])
        if i < len(data) - 1:
            assert got == [], f"message completed early at byte {i}"
        seen.extend(got)
    assert len(seen) == 1
    msg = seen[0]
    assert isinstance(msg, Request)
    assert msg.method == "OPTIONS"
    assert msg.call_id == "call-1@192.0.2.1"
    assert msg.body == b"v=0\r\n"
    assert framer.buffered == 0


def test_several_messages_in_one_chunk_keep_their_bodies_and_order() -> None:
    framer = StreamFramer()
    data = _options(1, b"one") + RESPONSE + _options(3)
    items = framer.feed(data)
    assert [type(i) for i in items] == [Request, Response, Request]
    first, second, third = items
    assert isinstance(first, Request) and first.body == b"one" and first.cseq == (1, "OPTIONS")
    assert isinstance(second, Response) and second.status == 200 and second.body == b"hello"
    assert isinstance(third, Request) and third.cseq == (3, "OPTIONS") and third.body == b""
    assert framer.buffered == 0


def test_message_split_in_the_body_waits_for_the_rest() -> None:
    framer = StreamFramer()
    data = _options(1, b"0123456789")
    assert framer.feed(data[:-4]) == []
    assert framer.buffered == len(data) - 4
    (msg,) = framer.feed(data[-4:] + _options(2)[:10])
    assert isinstance(msg, Request) and msg.body == b"0123456789"
    assert framer.buffered == 10


def test_crlfcrlf_is_a_keepalive_ping_between_messages() -> None:
    framer = StreamFramer()
    items = framer.feed(b"\r\n\r\n" + _options(1) + b"\r\n\r\n")
    assert [type(i) for i in items] == [KeepAlivePing, Request, KeepAlivePing]


def test_ping_split_across_chunks_is_still_a_ping() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [KeepAlivePing()]
    assert framer.buffered == 0


def test_single_crlf_before_a_message_is_skipped() -> None:
    # §7.5: CRLFs before a start line are ignored; a lone CRLF is not a ping.
    framer = StreamFramer()
    items = framer.feed(b"\r\n" + _options(1))
    assert [type(i) for i in items] == [Request]


def test_missing_content_length_is_fatal_for_the_stream() -> None:
    data = _options(1).replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(SipParseError, match="Content-Length"):
        StreamFramer().feed(data)


def test_oversize_head_without_end_raises_message_too_large() -> None:
    framer = StreamFramer(max_size=1000)
    framer.feed(b"OPTIONS sip:a SIP/2.0\r\n")
    with pytest.raises(MessageTooLarge):
        for _ in range(100):
            framer.feed(b"X-Filler: " + b"y" * 30 + b"\r\n")


def test_oversize_declared_body_raises_before_the_body_arrives() -> None:
    framer = StreamFramer(max_size=1000)
    data = _options(1).replace(b"Content-Length: 0", b"Content-Length: 5000")
    with pytest.raises(MessageTooLarge) as info:
        framer.feed(data)
    assert info.value.status == 513


def test_message_exactly_at_the_limit_passes() -> None:
    data = _options(1, b"x" * 40)
    (msg,) = StreamFramer(max_size=len(data)).feed(data)
    assert isinstance(msg, Request)
    with pytest.raises(MessageTooLarge):
        StreamFramer(max_size=len(data) - 1).feed(data)


def test_bad_head_with_content_length_is_skipped_and_the_stream_goes_on() -> None:
    bad = b"OPTIONS sip:a SIP/2.0\r\nthis line has no colon\r\nContent-Length: 4\r\n\r\nBODY"
    framer = StreamFramer()
    items = framer.feed(bad + _options(2))
    assert len(items) == 2
    failure, good = items
    assert isinstance(failure, ParseFailure)
    assert b"this line has no colon" in failure.head
    assert failure.error.status == 400
    assert isinstance(good, Request) and good.cseq == (2, "OPTIONS")


def test_bad_head_waits_for_its_whole_body_before_skipping() -> None:
    bad = b"GARBAGE LINE\r\nl: 6\r\n\r\n"
    framer = StreamFramer()
    assert framer.feed(bad + b"abc") == []
    items = framer.feed(b"def" + RESPONSE)
    assert [type(i) for i in items] == [ParseFailure, Response]


def test_bad_head_without_content_length_is_fatal() -> None:
    with pytest.raises(SipParseError, match="unframeable"):
        StreamFramer().feed(b"NOT SIP AT ALL\r\nFoo: bar\r\n\r\n")


def test_bad_head_with_unreadable_content_length_is_fatal() -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(b"NOT SIP\r\nContent-Length: -1\r\n\r\n")


def test_too_many_headers_is_fatal() -> None:
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(20))
    data = _options(1).replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n" + lines)
    with pytest.raises(SipParseError):
        StreamFramer(max_headers=10).feed(data)


def _trickle(framer: StreamFramer, data: bytes) -> tuple[list[object], float]:
    items: list[object] = []
    started = time.perf_counter()
    for i in range(len(data)):
        items.extend(framer.feed(data[i : i + 1]))
    return items, time.perf_counter() - started


def test_head_trickled_byte_by_byte_costs_linear_time() -> None:
    # A slowloris peer sending a 60 KB head one byte at a time: rescanning the whole buffer for
    # CRLFCRLF on every byte took about a second here; resuming the scan takes a few ms.
    filler = b"".join(b"X-Pad-%03d: %s\r\n" % (i, b"p" * 290) for i in range(200))
    data = _options(1).replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n" + filler)
    items, elapsed = _trickle(StreamFramer(), data)
    assert len(items) == 1
    assert elapsed < 0.5, f"{len(data)} bytes took {elapsed:.2f} s"


def test_body_trickled_byte_by_byte_parses_the_head_once() -> None:
    # Re-parsing a 60-header head for each of 50,000 body bytes took seconds.
    extra = b"".join(b"X-Hdr-%02d: value\r\n" % i for i in range(60))
    data = _options(1, b"b" * 50000).replace(b"CSeq", extra + b"CSeq")
    items, elapsed = _trickle(StreamFramer(), data)
    assert len(items) == 1
    msg = items[0]
    assert isinstance(msg, Request) and msg.body == b"b" * 50000
    assert elapsed < 0.5, f"{len(data)} bytes took {elapsed:.2f} s"


def test_whole_messages_before_bad_bytes_come_out_and_the_error_follows() -> None:
    framer = StreamFramer()
    items = framer.feed(_options(1) + RESPONSE + b"NOT SIP\r\n\r\n")
    assert [type(i) for i in items] == [Request, Response]
    with pytest.raises(SipParseError, match="unframeable"):
        framer.feed(b"")


def test_in_message_is_true_only_while_a_message_is_partly_received() -> None:
    f = StreamFramer()
    assert not f.in_message
    f.feed(b"\r\n")  # between messages: not a message yet (it may become a keep-alive ping)
    assert not f.in_message
    f.feed(b"\r\n")
    assert not f.in_message and f.buffered == 0
    f.feed(b"OPTIONS sip:a@b SIP/2.0\r\n")
    assert f.in_message
    f.feed(b"Content-Length: 3\r\n\r\nab")  # head framed, body still arriving
    assert f.in_message
    (msg,) = f.feed(b"c")
    assert msg.body == b"abc" and not f.in_message  # type: ignore[union-attr]
