"""Two UserAgents calling each other over real loopback sockets (UDP, TCP, TLS, IPv6).

Each test runs its own event loop (``asyncio.run``) with short SIP timers so the whole file stays
fast; nothing in the units under test is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

import pytest
import uvloop

from ifescalate.net.endpoint import SipEndpoint, Target
from ifescalate.net.tls import TlsOptions, client_context, server_context
from ifescalate.net.transport import ListenSpec, Source
from ifescalate.net.ua import Call, CallFailed, IncomingCall, UaConfig, UserAgent
from ifescalate.sip.message import Request
from ifescalate.sip.request_builder import new_request
from ifescalate.sip.transaction import Timers

FAST = Timers(t1=0.05)
T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 10.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6(), reason="no ::1 on this machine")


@dataclass
class Pair:
    caller: UserAgent
    callee: UserAgent
    callee_at: ListenSpec
    caller_at: ListenSpec

    @property
    def uri(self) -> str:
        return uri_for(self.callee_at, "bob")


def uri_for(spec: ListenSpec, user: str) -> str:
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    if spec.transport == "TLS":
        return f"sips:{user}@{host}:{spec.port}"
    suffix = ";transport=tcp" if spec.transport == "TCP" else ""
    return f"sip:{user}@{host}:{spec.port}{suffix}"


@contextlib.asynccontextmanager
async def agents(
    transport: str = "UDP",
    host: str = "127.0.0.1",
    *,
    callee_config: UaConfig | None = None,
    timers: Timers = FAST,
    cert: tuple[Path, Path] | None = None,
) -> AsyncIterator[Pair]:
    """A caller ("alice") and a callee ("bob"), each on its own endpoint and listener."""
    server_tls = client_tls = None
    if transport == "TLS":
        assert cert is not None
        server_tls = server_context(TlsOptions(cert_file=cert[0], key_file=cert[1]))
        client_tls = client_context(TlsOptions(ca_file=cert[0]))
    caller = UserAgent(UaConfig(user="alice"))
    callee = UserAgent(callee_config or UaConfig(user="bob"))
    endpoints = []
    bound = []
    for ua in (caller, callee):
        ep = SipEndpoint(ua, timers=timers, tls_client_context=client_tls)
        ua.attach(ep)
        endpoints.append(ep)
        bound.append(await ep.listen(ListenSpec(transport, host, 0), server_tls))
    try:
        yield Pair(caller, callee, callee_at=bound[1], caller_at=bound[0])
    finally:
        for ep in endpoints:
            await ep.close()


def answer_and_keep(ua: UserAgent) -> list[Call]:
    """Make ``ua`` answer every call at once and remember the answered Call objects."""
    answered: list[Call] = []
    ua.on_incoming = lambda incoming: answered.append(incoming.answer())
    return answered


TRANSPORTS = [
    pytest.param("UDP", "127.0.0.1", id="udp"),
    pytest.param("TCP", "127.0.0.1", id="tcp"),
    pytest.param("TLS", "127.0.0.1", id="tls"),
    pytest.param("UDP", "::1", id="udp6", marks=needs_ipv6),
    pytest.param("TCP", "::1", id="tcp6", marks=needs_ipv6),
]


# --------------------------------------------------------------------------- calls, both directions


@pytest.mark.parametrize(("transport", "host"), TRANSPORTS)
def test_call_then_caller_hangs_up(transport: str, host: str, dev_cert: tuple[Path, Path]) -> None:
    async def main() -> None:
        async with agents(transport, host, cert=dev_cert) as p:
            answered = answer_and_keep(p.callee)
            call = await p.caller.call(p.uri)
            assert call.established
            assert call.remote_sdp.startswith(b"v=0")
            (theirs,) = answered
            assert theirs.source is not None and theirs.source.transport == transport
            assert theirs.remote_sdp == call.local_sdp
            await call.hangup()
            assert call.end_reason == "bye"
            assert await asyncio.wait_for(theirs.wait_ended(), 2) == "remote-bye"
            assert p.caller.calls == {} and p.callee.calls == {}

    run(main())


@pytest.mark.parametrize(("transport", "host"), TRANSPORTS)
def test_call_then_callee_hangs_up(transport: str, host: str, dev_cert: tuple[Path, Path]) -> None:
    async def main() -> None:
        async with agents(transport, host, cert=dev_cert) as p:
            answered = answer_and_keep(p.callee)
            call = await p.caller.call(p.uri)
            await asyncio.sleep(0.05)  # let the ACK arrive before the BYE
            await answered[0].hangup()
            assert answered[0].end_reason == "bye"
            assert await asyncio.wait_for(call.wait_ended(), 2) == "remote-bye"

    run(main())


def test_call_on_uvloop() -> None:
    async def main() -> None:
        async with agents("UDP") as p:
            call = await p.caller.call(p.uri)
            await call.hangup()
            assert call.end_reason == "bye"

    uvloop.run(asyncio.wait_for(main(), 10))


# ------------------------------------------------------------------------ out-of-dialog requests


@pytest.mark.parametrize(("transport", "host"), TRANSPORTS)
def test_options_and_message(transport: str, host: str, dev_cert: tuple[Path, Path]) -> None:
    async def main() -> None:
        async with agents(transport, host, cert=dev_cert) as p:
            got: list[tuple[Request, Source]] = []
            p.callee.on_message = lambda req, src: got.append((req, src))
            resp = await p.caller.options(p.uri)
            assert resp.status == 200
            assert "MESSAGE" in (resp.headers.get("Allow") or "")
            resp = await p.caller.message(p.uri, b"hello expert")
            assert resp.status == 200
            ((req, src),) = got
            assert req.body == b"hello expert"
            assert src.transport == transport
            assert src.host == host

    run(main())


def test_update_is_allowed_and_outside_a_dialog_gets_481() -> None:
    # RFC 3311 §5.1: UPDATE is sent only to a peer whose Allow lists it; one matching no dialog is 481.
    async def main() -> None:
        async with agents("UDP") as p:
            resp = await p.caller.options(p.uri)
            assert "UPDATE" in (resp.headers.get("Allow") or "")
            target = Target("UDP", p.callee_at.host, p.callee_at.port)
            at = p.caller_at
            update = new_request(
                "UPDATE", p.uri, from_addr=f"<sip:alice@{at.host}>", from_tag="u1",
                to_addr=f"<{p.uri}>", call_id="no-such-dialog", cseq=1, via_host=at.host,
                via_port=at.port, transport="UDP", branch="z9hG4bK-update-1",
                contact=f"<sip:alice@{at.host}:{at.port}>",
            )  # fmt: skip
            resp = await p.caller.request(update, target)
            assert resp.status == 481

    run(main())


def test_options_response_carries_received_and_rport() -> None:
    # RFC 3581 §4: the server fills rport with the source port and adds received.
    async def main() -> None:
        async with agents("UDP") as p:
            resp = await p.caller.options(p.uri)
            via = resp.headers.first("Via") or ""
            assert f";rport={p.caller_at.port}" in via
            assert ";received=127.0.0.1" in via

    run(main())


# --------------------------------------------------------------------- cancel, reject, ring, auth


def test_cancel_before_answer_gets_487_and_200_for_the_cancel() -> None:
    async def main() -> None:
        async with agents("UDP") as p:
            ringing: list[IncomingCall] = []

            def ring_only(incoming: IncomingCall) -> None:
                ringing.append(incoming)
                incoming.ring()

            p.callee.on_incoming = ring_only
            got_180 = asyncio.Event()
            task = asyncio.create_task(p.caller.call(p.uri, on_provisional=lambda r: got_180.set()))
            await asyncio.wait_for(got_180.wait(), 2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.wait_for(ringing[0].call.wait_ended(), 2) == "cancelled"
            stats = p.caller.ep.stats
            for _ in range(40):  # the 487 may arrive just after the 200 for the CANCEL
                if stats["responses_received_4xx"]:
                    break
                await asyncio.sleep(0.01)
            assert stats["responses_received_1xx"] == 1  # the 180
            assert stats["responses_received_2xx"] == 1  # 200 for the CANCEL
            assert stats["responses_received_4xx"] == 1  # 487 for the INVITE
            assert p.callee.ep.stats["responses_sent_4xx"] == 1
            assert p.caller.calls == {} and p.callee.calls == {}

    run(main())


@pytest.mark.parametrize("status", [486, 603])
def test_reject(status: int) -> None:
    async def main() -> None:
        async with agents("UDP") as p:
            p.callee.on_incoming = lambda incoming: incoming.reject(status)
            with pytest.raises(CallFailed) as info:
                await p.caller.call(p.uri)
            assert info.value.status == status
            assert p.callee.stats["rejected"] == 1
            assert p.caller.calls == {} and p.callee.calls == {}

    run(main())


def test_ring_then_answer() -> None:
    async def main() -> None:
        async with agents("UDP", callee_config=UaConfig(user="bob", ring_ms=150)) as p:
            provisional: list[int] = []
            loop = asyncio.get_running_loop()
            started = loop.time()
            call = await p.caller.call(p.uri, on_provisional=lambda r: provisional.append(r.status))
            assert provisional == [180]
            assert loop.time() - started >= 0.15
            assert call.established
            await call.hangup()

    run(main())


def _auth_config() -> UaConfig:
    return UaConfig(user="bob", auth_user="expert", auth_password="s3cret")


def test_digest_with_the_right_password() -> None:
    async def main() -> None:
        async with agents("UDP", callee_config=_auth_config()) as p:
            call = await p.caller.call(p.uri, auth=("expert", "s3cret"))
            assert call.established
            assert call.invite.headers.get("Authorization") is not None
            resp = await p.caller.message(p.uri, b"hi", auth=("expert", "s3cret"))
            assert resp.status == 200
            await call.hangup()

    run(main())


def test_digest_with_a_wrong_password_fails_with_401() -> None:
    async def main() -> None:
        async with agents("UDP", callee_config=_auth_config()) as p:
            with pytest.raises(CallFailed) as info:
                await p.caller.call(p.uri, auth=("expert", "wrong"))
            assert info.value.status == 401
            # Two challenges: one for the bare INVITE, one for the wrong credentials.
            assert p.caller.ep.stats["responses_received_4xx"] == 2
            assert p.callee.stats["answered"] == 0
            resp = await p.caller.message(p.uri, b"hi", auth=("expert", "wrong"))
            assert resp.status == 401

    run(main())


def test_digest_without_credentials_fails_with_401() -> None:
    async def main() -> None:
        async with agents("UDP", callee_config=_auth_config()) as p:
            with pytest.raises(CallFailed) as info:
                await p.caller.call(p.uri)
            assert info.value.status == 401
            assert p.caller.calls == {}

    run(main())


# ------------------------------------------------------------------------------- timeouts


def test_timer_b_when_nobody_answers() -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))
            port = silent.getsockname()[1]
            async with agents("UDP", timers=Timers(t1=0.01)) as p:
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises(CallFailed) as info:
                    await p.caller.call(f"sip:nobody@127.0.0.1:{port}")
                elapsed = loop.time() - started
                assert info.value.status == 408
                assert "timer B" in info.value.reason
                assert 0.6 <= elapsed < 2.0  # Timer B = 64*T1 = 0.64 s
                assert p.caller.calls == {}
                # Timer A retransmitted the INVITE at 10, 30, 70, 150, 310 ms (§17.1.1.2).
                silent.setblocking(False)
                copies = 0
                with contextlib.suppress(BlockingIOError):
                    while silent.recv(65535):
                        copies += 1
                # The original and six retransmissions before 640 ms; the last one is only 10 ms
                # before Timer B, so a loaded machine may let Timer B win.
                assert copies in (6, 7)

    run(main())


def test_timer_f_for_options_nobody_answers() -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))
            port = silent.getsockname()[1]
            async with agents("UDP", timers=Timers(t1=0.01)) as p:
                with pytest.raises(CallFailed) as info:
                    await p.caller.options(f"sip:nobody@127.0.0.1:{port}")
                assert info.value.status == 408 and "timer F" in info.value.reason

    run(main())


# ----------------------------------------------------- 2xx reliability through a lossy relay


@dataclass
class Relay(asyncio.DatagramProtocol):
    """A UDP hop between caller and callee that can drop ACKs.

    It adds itself as a loose Record-Route to the INVITE so both sides route in-dialog requests
    (ACK, BYE) through it, and strips the Route it is then sent (§16.4), like a proxy would.
    """

    caller: tuple[str, int]
    callee: tuple[str, int]
    drop_acks: int = 0
    seen: list[tuple[float, str]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    port: int = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        first = data.split(b"\r\n", 1)[0].decode()
        cseq = next(
            (ln for ln in data.split(b"\r\n") if ln.lower().startswith(b"cseq:")), b""
        ).decode()
        label = (
            f"{first.split(' ')[0]} {first.split(' ')[1]}" if first.startswith("SIP/") else first
        )
        self.seen.append((asyncio.get_running_loop().time(), f"{label} | {cseq}"))
        if first.startswith("ACK ") and self.drop_acks > 0:
            self.drop_acks -= 1
            return
        if not first.startswith("SIP/"):
            lines = [ln for ln in data.split(b"\r\n") if not ln.lower().startswith(b"route:")]
            if first.startswith("INVITE "):
                lines.insert(1, f"Record-Route: <sip:127.0.0.1:{self.port};lr>".encode())
            data = b"\r\n".join(lines)
        dest = self.callee if addr == self.caller else self.caller
        assert self.transport is not None
        self.transport.sendto(data, dest)

    def count(self, what: str) -> int:
        return sum(1 for _, label in self.seen if label.startswith(what))

    def times(self, what: str) -> list[float]:
        return [at for at, label in self.seen if label.startswith(what)]


async def _relay(p: Pair, drop_acks: int) -> Relay:
    loop = asyncio.get_running_loop()
    _, relay = await loop.create_datagram_endpoint(
        lambda: Relay(("127.0.0.1", p.caller_at.port), ("127.0.0.1", p.callee_at.port), drop_acks),
        local_addr=("127.0.0.1", 0),
    )
    return relay


def test_lost_ack_is_recovered_by_2xx_retransmission_and_re_ack() -> None:
    async def main() -> None:
        async with agents("UDP", timers=Timers(t1=0.02)) as p:
            answered = answer_and_keep(p.callee)
            relay = await _relay(p, drop_acks=1)
            call = await p.caller.call(p.uri, target=Target("UDP", "127.0.0.1", relay.port))
            await asyncio.sleep(0.3)
            # The first ACK was lost; the callee resent its 200 and the caller ACKed it again.
            assert relay.count("SIP/2.0 200 | CSeq: 1 INVITE") >= 2
            assert relay.count("ACK ") == relay.count("SIP/2.0 200 | CSeq: 1 INVITE")
            resent = relay.count("SIP/2.0 200")
            await asyncio.sleep(0.3)
            assert relay.count("SIP/2.0 200") == resent  # the second ACK stopped them
            await asyncio.sleep(1.0)  # past 64*T1 = 1.28 s since the answer
            assert answered[0].end_reason is None and call.end_reason is None
            await call.hangup()
            assert relay.count("BYE ") == 1  # the BYE followed the Record-Route as well
            assert await asyncio.wait_for(answered[0].wait_ended(), 1) == "remote-bye"
            assert relay.transport is not None
            relay.transport.close()

    run(main())


def test_2xx_retransmitted_until_64_t1_then_bye_when_no_ack_arrives() -> None:
    async def main() -> None:
        async with agents("UDP", timers=Timers(t1=0.02)) as p:
            answered = answer_and_keep(p.callee)
            relay = await _relay(p, drop_acks=1000)
            call = await p.caller.call(p.uri, target=Target("UDP", "127.0.0.1", relay.port))
            reason = await asyncio.wait_for(call.wait_ended(), 3)
            assert reason == "remote-bye"
            assert answered[0].end_reason == "no-ack"
            times = relay.times("SIP/2.0 200 | CSeq: 1 INVITE")
            invited = relay.times("INVITE ")[0]  # the 200 was sent after this
            # §13.3.1.4: resent after T1, 2*T1, 4*T1, ... (T2 = 4 s is never reached here), at
            # 20, 60, 140, 300, 620, 1260 ms; the last one is only 20 ms before 64*T1 = 1280 ms,
            # so a loaded machine may skip it.
            assert len(times) in (6, 7), times
            for at, due in zip(times[1:], [0.02, 0.06, 0.14, 0.30, 0.62], strict=False):
                assert due <= at - invited <= due + 0.15, [round(t - invited, 3) for t in times]
            assert relay.count("ACK ") == len(times)  # every 2xx was ACKed again by the caller
            assert relay.transport is not None
            relay.transport.close()

    run(main())


# ------------------------------------------------------------------- raw 2xx retransmission


def _respond_raw(invite: bytes, status_line: str, to_tag: str, contact: str) -> bytes:
    keep = (b"via:", b"from:", b"to:", b"call-id:", b"cseq:", b"record-route:")
    lines = [
        ln for ln in invite.split(b"\r\n\r\n")[0].split(b"\r\n")[1:] if ln.lower().startswith(keep)
    ]
    out = [status_line.encode()]
    for ln in lines:
        out.append(ln + f";tag={to_tag}".encode() if ln.lower().startswith(b"to:") else ln)
    out += [f"Contact: <{contact}>".encode(), b"Content-Length: 0", b"", b""]
    return b"\r\n".join(out)


def test_caller_re_acks_each_retransmitted_2xx() -> None:
    # §13.2.2.4: the UAC must ACK every retransmission of the 2xx; the peer here is a bare socket.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.setblocking(False)
            port = peer.getsockname()[1]
            async with agents("UDP") as p:
                task = asyncio.create_task(p.caller.call(f"sip:raw@127.0.0.1:{port}"))
                invite, addr = await loop.sock_recvfrom(peer, 65535)
                assert invite.startswith(b"INVITE ")
                ok = _respond_raw(invite, "SIP/2.0 200 OK", "rawtag", f"sip:raw@127.0.0.1:{port}")
                acks = []
                for _ in range(3):
                    await loop.sock_sendto(peer, ok, addr)
                    while True:
                        data, _ = await asyncio.wait_for(loop.sock_recvfrom(peer, 65535), 2)
                        if data.startswith(b"ACK "):
                            acks.append(data)
                            break
                call = await task
                assert call.established
                assert len(acks) == 3
                assert all(b"tag=rawtag" in a and b"CSeq: 1 ACK" in a for a in acks)

    run(main())
