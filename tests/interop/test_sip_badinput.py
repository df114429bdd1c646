"""Bad input against a running `sip answer`: it answers what can be answered, drops the rest, closes only
the offending TCP connection, and never stops serving (SIPp calls succeed afterwards).

RFC 4475 section 3.1.2 messages are sent byte for byte as UDP datagrams, with one change: `;rport` after
the sent-by of the top Via (RFC 3581), so the reply comes back to the test's socket instead of port 5060
of the made-up host the message names. The defects the RFC tests are all elsewhere and stay intact.
"""

from __future__ import annotations

import os
import random
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.test_sip_cli import HOST, Answerer
from tests.peers import free_port, run_sipp

pytestmark = pytest.mark.interop


def _find_corpus() -> Path:
    env = os.environ.get("IFESCALATE_RFC4475_DIR")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "conformance" / "rfc4475"
        if candidate.is_dir():
            return candidate
    return Path("/work/shared/conformance/rfc4475")


CORPUS = _find_corpus()

# RFC 4475 section 3.1.2: every invalid message, and what must come back (None: it is a response,
# which is never answered, RFC 3261 section 18.1.2 / RFC 4475 3.1.2.4 and 3.1.2.19).
INVALID: dict[str, int | None] = {
    "badinv01": 400,
    "clerr": 400,
    "scalar02": 400,
    "scalarlg": None,
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "trws": 400,
    "escruri": 400,
    "baddate": 400,
    "regbadct": 400,
    "badaspec": 400,
    "baddn": 400,
    "badvers": 505,
    "mismatch01": 400,
    "mismatch02": 400,
    "bigcode": None,
    "ncl": 400,
}

# RFC 4475 section 3.3: application-layer cases with the status the RFC names for a UAS.
APPLICATION: dict[str, int] = {
    "bext01": 420,  # Require of an unknown extension (3.3.2), with Unsupported
    "invut": 415,  # INVITE body of an unknown type (3.3.7), with Accept
    "sdp01": 406,  # Accept without SDP, so the 2xx could carry no answer (3.3.15)
    "unkscm": 416,  # unknown Request-URI scheme (3.3.4)
    "novelsc": 416,  # a new scheme in the Request-URI (3.3.5)
    "zeromf": 200,  # Max-Forwards 0: an endpoint serves it as if positive (3.3.6)
}

_TOP_VIA = re.compile(
    rb"^((?:Via|v)[ \t]*:[ \t]*SIP[ \t]*/[^/\r\n]+/[ \t]*\S+[ \t]+[^;,\s]+)", re.M | re.I
)


def with_rport(data: bytes) -> bytes:
    """`data` with `;rport` right after the top Via's sent-by (the only change made to a message)."""
    changed, count = _TOP_VIA.subn(rb"\1;rport", data, count=1)
    assert count == 1, data[:200]
    return changed


def options(
    port: int, *, call_id: str, local_port: int, extra: str = "", transport: str = "UDP"
) -> bytes:
    return (
        f"OPTIONS sip:bob@{HOST}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {HOST}:{local_port};branch=z9hG4bK-{call_id};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@{HOST}>;tag=probe\r\nTo: <sip:bob@{HOST}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def exchange_udp(port: int, data: bytes, *, wait: float = 0.5, settle: float = 0.1) -> list[bytes]:
    """Send one datagram from a fresh socket; return what came back: everything within `wait` s
    when nothing does, else everything until `settle` s after the first reply (to catch extras)."""
    replies: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.sendto(data, (HOST, port))
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                replies.append(sock.recv(65535))
            except TimeoutError:
                break
            deadline = min(deadline, time.monotonic() + settle)
    return replies


def status_of(reply: bytes) -> int:
    match = re.match(rb"SIP/2\.0 (\d{3}) ", reply)
    assert match, reply[:200]
    return int(match.group(1))


def assert_alive(port: int) -> None:
    """The answerer still answers an OPTIONS over UDP with 200."""
    replies = exchange_udp(
        port, options(port, call_id=f"alive-{time.monotonic_ns()}", local_port=0), wait=2
    )
    assert replies and status_of(replies[0]) == 200, replies


@pytest.fixture(scope="module")
def answerer() -> Iterator[Answerer]:
    with Answerer(f"udp:{HOST}:0", f"tcp:{HOST}:0") as running:
        yield running
        assert running.running, running.output()


@pytest.mark.parametrize("name", sorted(INVALID))
def test_rfc4475_invalid_message_gets_its_status_or_nothing(answerer: Answerer, name: str) -> None:
    data = (CORPUS / f"{name}.dat").read_bytes()
    replies = exchange_udp(answerer.port("udp"), with_rport(data))
    expected = INVALID[name]
    if expected is None:
        assert replies == [], replies
    else:
        assert [status_of(r) for r in replies] == [expected], replies
        # The reply belongs to the request: same Call-ID and CSeq copied back (RFC 3261 section 8.2.6.2).
        call_id = re.search(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", data, re.M | re.I)
        assert call_id is not None and call_id.group(1) in replies[0], replies[0]
    assert_alive(answerer.port("udp"))


@pytest.mark.parametrize("name", sorted(APPLICATION))
def test_rfc4475_application_layer_status(answerer: Answerer, name: str) -> None:
    data = (CORPUS / f"{name}.dat").read_bytes()
    replies = exchange_udp(answerer.port("udp"), with_rport(data))
    assert [status_of(r) for r in replies] == [APPLICATION[name]], replies
    if name == "bext01":
        assert re.search(rb"^Unsupported: .*nothingSupportsThis", replies[0], re.M), replies[0]


def test_garbage_datagrams_are_dropped(answerer: Answerer) -> None:
    rng = random.Random(4475)
    junk = [
        b"",
        b"\x00" * 64,
        b"\r\n\r\n\r\n",
        b"hello world",
        b"INVITE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
        + bytes(rng.getrandbits(8) for _ in range(200)),
        *(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 1400))) for _ in range(30)),
    ]
    for data in junk:
        assert exchange_udp(answerer.port("udp"), data, wait=0.05) == [], data[:40]
    assert_alive(answerer.port("udp"))


def test_header_flood_is_bounded(answerer: Answerer) -> None:
    port = answerer.port("udp")
    flood = "".join(f"X-Flood-{i}: a\r\n" for i in range(2000))  # 2,000 lines, about 30 KB
    replies = exchange_udp(port, options(port, call_id="flood", local_port=0, extra=flood))
    # Over the header limit: 513 Message Too Large (RFC 3261 section 21.5.14) or dropped.
    assert [status_of(r) for r in replies] in ([513], []), replies
    assert_alive(port)


def test_biggest_datagram_does_not_hurt(answerer: Answerer) -> None:
    port = answerer.port("udp")
    head = options(port, call_id="big", local_port=0, extra="X-Pad: {pad}\r\n").decode()
    pad = "p" * (65507 - len(head) + len("{pad}"))  # the largest UDP payload IPv4 can carry
    data = head.replace("{pad}", pad).encode()
    assert len(data) == 65507
    replies = exchange_udp(port, data, wait=1.0)
    # Within the 64 KiB message limit, so it may be served (200); refusing it (513) or dropping it
    # is as good. Anything else, or a dead answerer, is not.
    assert [status_of(r) for r in replies] in ([200], [513], []), replies
    assert_alive(port)


def _tcp(port: int) -> socket.socket:
    conn = socket.create_connection((HOST, port), timeout=5)
    conn.settimeout(5)
    return conn


def _read_reply(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65535)
        if not chunk:
            break
        data += chunk
    return data


def _closed_by_peer(conn: socket.socket, timeout: float = 5.0) -> bool:
    conn.settimeout(timeout)
    try:
        while chunk := conn.recv(65535):
            assert not chunk.startswith(b"SIP/2.0 2"), chunk[:200]
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize(
    "garbage",
    [
        b"GARBAGE WITHOUT LENGTH\r\nX: y\r\n\r\n",  # unframeable: no Content-Length (RFC 3261 18.3)
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 32 + b"\r\n\r\n",  # a TLS hello
        b"X" * 70_000,  # a head that never ends, past the 64 KiB limit
    ],
    ids=["no-length", "tls-hello", "endless-head"],
)
def test_tcp_garbage_closes_only_that_connection(answerer: Answerer, garbage: bytes) -> None:
    port = answerer.port("tcp")
    with _tcp(port) as good, _tcp(port) as bad:
        local = good.getsockname()[1]
        good.sendall(options(port, call_id="tcp-good-1", local_port=local, transport="TCP"))
        assert status_of(_read_reply(good)) == 200
        bad.sendall(garbage)
        assert _closed_by_peer(bad), "the answerer kept a connection that sent garbage"
        # The other connection is untouched and still served.
        good.sendall(options(port, call_id="tcp-good-2", local_port=local, transport="TCP"))
        reply = _read_reply(good)
        assert status_of(reply) == 200 and b"tcp-good-2" in reply, reply
    assert_alive(answerer.port("udp"))


def test_tcp_message_too_large_is_refused(answerer: Answerer) -> None:
    port = answerer.port("tcp")
    with _tcp(port) as conn:
        local = conn.getsockname()[1]
        big = options(port, call_id="tcp-big", local_port=local, transport="TCP")
        conn.sendall(big.replace(b"Content-Length: 0", b"Content-Length: 1000000"))
        # 513 then close, or close at once: the body is never awaited.
        assert _closed_by_peer(conn), "a 1 MB Content-Length was accepted on a stream"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_calls_still_succeed_afterwards(answerer: Answerer, transport: str) -> None:
    args = [
        "-sn", "uac", f"{HOST}:{answerer.port(transport)}", "-i", HOST, "-p", str(free_port("both")),
        "-t", "u1" if transport == "udp" else "t1", "-m", "20", "-r", "20", "-d", "100",
        "-recv_timeout", "10000",
    ]  # fmt: skip
    result = run_sipp(args, timeout=60)
    assert result.ok and result.successful == 20, result.explain()
    assert answerer.running, answerer.output()
