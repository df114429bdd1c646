"""The shipped edge config (deploy/kamailio/kamailio.cfg) run by a real Kamailio in front of two real
`ifescalate sip answer` processes, with SIPp calling through it.

Only the `#!define` settings at the top of the file are rewritten (loopback address, free ports, a
dispatcher list naming the two instances, short timers); the routing logic under test is the shipped
text. What is proven:
- dispatch: 20 calls through the edge reach both instances (round robin), every call completes with
  ACK and BYE routed back through the edge (SIPp's uac_rr.xml follows the Record-Route set);
- failover: one instance is SIGKILLed; the next 10 calls all complete on the other, at least one of them
  by failing over after the dead instance stayed silent (Kamailio logs FAILOVER ... after 408); the dead
  one is then marked down and, with its OPTIONS probes failing, no later call is even tried on it;
- the edge allowlist acts on the real source address: a request from 127.0.0.2 gets
  403 Forbidden - IP Not Allowlisted while the same request from 127.0.0.1 is answered by an instance.
All of it twice: with UDP to the instances, and with TLS to them as in production (tls-edge.cfg, the
instances refusing plain SIP even on loopback; a dead instance then refuses the connect, failover is
immediate). A third test shows the edge's flood layers: pike drops one flooding source while another
is answered, and the INVITE ratelimit pipe answers 503 above its rate. A fourth shows the edge's
X-IF-Source reaching the instances' own allowlist (--trusted-proxy), and a forged one not. A fifth
shows that a UDP datagram spoofing an instance's address (raw socket) is not taken for the instance's
own request: the edge still names its real source.
"""

from __future__ import annotations

import re
import socket
import struct
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.interop.test_sip_cli import HOST, Answerer
from tests.peers import SCENARIOS, Kamailio, free_port, run_sipp
from tests.security.sipclient import SDP, SipClient

pytestmark = pytest.mark.interop

EDGE_CFG = Path(__file__).parents[2] / "deploy" / "kamailio" / "kamailio.cfg"

_DEFINE = r"^(#!define {name}) .*$"


def edge_config(defines: Mapping[str, str], *, with_tls: bool = False) -> str:
    """The shipped config with each named `#!define` value replaced (each must exist exactly once);
    `with_tls` defines WITH_TLS as `kamailio -A WITH_TLS` would."""
    text = EDGE_CFG.read_text()
    if with_tls:
        text = text.replace("#!KAMAILIO\n", "#!KAMAILIO\n#!define WITH_TLS\n", 1)
    for name, value in defines.items():
        text, n = re.subn(_DEFINE.format(name=name), rf"\g<1> {value}", text, flags=re.MULTILINE)
        assert n == 1, f"#!define {name} appears {n} times in {EDGE_CFG}"
    return text


def instance(inner: str, cert: tuple[Path, Path] | None = None) -> Answerer:
    # The edge is the transport peer of every request: trusting it keeps the instance's own flood
    # layer from counting all callers as one source (docs/runbook.md, "Behind Kamailio").
    extra = ["--trusted", f"{HOST}/32"]
    if inner == "tls":
        assert cert is not None
        # As in production: plain SIP refused (on loopback too), so every hop that works was TLS.
        return Answerer(
            f"tls:{HOST}:0", tls=cert, verbose=True,
            extra=[*extra, "--require-tls", "--tls-loopback-strict"],
        )  # fmt: skip
    return Answerer(f"udp:{HOST}:0", verbose=True, extra=extra)


def dispatcher_line(inner: str, answerer: Answerer) -> str:
    if inner == "tls":
        return f"1 sip:{HOST}:{answerer.port('tls')};transport=tls 0 0\n"
    return f"1 sip:{HOST}:{answerer.port('udp')} 0 0\n"


def tls_edge_config(tmp: Path, cert: tuple[Path, Path]) -> Path:
    """deploy/kamailio/tls-edge.cfg with the test certificate (also the CA the edge verifies with)."""
    path = tmp / "tls-edge.cfg"
    path.write_text(
        (EDGE_CFG.parent / "tls-edge.cfg")
        .read_text()
        .replace("/run/secrets/edge-tls/tls.crt", str(cert[0]))
        .replace("/run/secrets/edge-tls/tls.key", str(cert[1]))
        .replace("/run/secrets/internal-ca/ca.crt", str(cert[0]))
    )
    return path


def calls_seen(answerer: Answerer) -> int:
    return len(re.findall(r"^incoming call ", answerer.output(), re.MULTILINE))


def call_through(edge_port: int, calls: int) -> None:
    """`calls` SIPp calls (record-route aware) through the edge, 5 per second; all must complete."""
    result = run_sipp(
        [
            "-sf", str(SCENARIOS / "uac_rr.xml"), f"{HOST}:{edge_port}",
            "-s", "bob", "-i", HOST, "-p", str(free_port("udp")),
            "-m", str(calls), "-r", "5", "-l", "10", "-d", "200",
            "-recv_timeout", "8000",
        ],
        timeout=60,
    )  # fmt: skip
    assert result.ok and result.successful == calls, result.explain()


def _options(source: str, port: int, call_id: str) -> bytes:
    return (
        f"OPTIONS sip:bob@{HOST}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{call_id[:16]};rport\r\n"
        f"From: <sip:probe@{source}>;tag={call_id[:8]}\r\n"
        f"To: <sip:bob@{HOST}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def options_from(
    source: str, edge_port: int, *, wait: float = 8.0, retransmit: bool = True
) -> str | None:
    """One out-of-dialog OPTIONS to a user at the edge, sent from `source`: the final status line, or
    None when nothing final came within `wait` seconds (resent each second when `retransmit`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(min(1.0, wait))
        msg = _options(source, sock.getsockname()[1], uuid.uuid4().hex)
        deadline = time.monotonic() + wait
        sock.sendto(msg, (HOST, edge_port))
        while time.monotonic() < deadline:
            try:
                status = sock.recv(65535).decode(errors="replace").split("\r\n", 1)[0]
            except TimeoutError:
                if retransmit:
                    sock.sendto(msg, (HOST, edge_port))
                continue
            if not status.startswith("SIP/2.0 1"):
                return status
    return None


@pytest.mark.parametrize("inner", ["udp", "tls"])
def test_edge_dispatches_fails_over_and_allowlists(
    inner: str, tmp_path: Path, dev_cert: tuple[Path, Path]
) -> None:
    edge_port = free_port("both")
    with instance(inner, dev_cert) as a, instance(inner, dev_cert) as b:
        dispatcher = tmp_path / "dispatcher.list"
        dispatcher.write_text(dispatcher_line(inner, a) + dispatcher_line(inner, b))
        defines = {
            "LISTEN_IP": HOST,
            "SIP_PORT": str(edge_port),
            "DISPATCHER_LIST": f'"{dispatcher}"',
            "PROBE_INTERVAL": "1",
            "PROBE_THRESHOLD": "1",
            "FR_TIMER": "1000",
            "PIKE_REQS": "1000",
            "WORKERS": "2",
            "ALLOW_NETS": f'"{HOST}/32"',
        }
        if inner == "tls":
            # Kamailio sends TLS from a TLS listening socket: it needs its own TLS listener.
            defines |= {
                "SIPS_PORT": str(free_port("tcp")),
                "TLS_CONFIG": f'"{tls_edge_config(tmp_path, dev_cert)}"',
            }
        config = edge_config(defines, with_tls=inner == "tls")
        with Kamailio(config, wait_for=(HOST, edge_port, "udp")) as kamailio:
            # Dispatch: round robin over both instances.
            call_through(edge_port, 20)
            seen_a, seen_b = calls_seen(a), calls_seen(b)
            assert seen_a + seen_b == 20, (seen_a, seen_b)
            assert seen_a >= 5 and seen_b >= 5, (seen_a, seen_b)
            assert "FAILOVER" not in kamailio.log()

            # The allowlist decides on the real source address, not on anything in the message.
            assert (
                options_from("127.0.0.2", edge_port) == "SIP/2.0 403 Forbidden - IP Not Allowlisted"
            )
            answer = options_from(HOST, edge_port)
            assert answer is not None and answer.startswith("SIP/2.0 200"), kamailio.log()[-2000:]

            # Failover: B dies without a word; calls keep completing on A.
            b.process.kill()
            before_a = calls_seen(a)
            call_through(edge_port, 10)
            log = kamailio.log()
            assert calls_seen(a) - before_a == 10, (before_a, calls_seen(a))
            failovers = re.findall(r"FAILOVER INVITE \S+ to sip:\S+ after (\S+)", log)
            # UDP: the dead instance is silent (tm's 408 after FR_TIMER); TLS: the connect is refused
            # (t_relay fails at once, or tm's 477 when the failure comes later).
            expected = {"408"} if inner == "udp" else {"send_failed", "477"}
            assert failovers and set(failovers) <= expected, log[-3000:]

            # Marked down (by the failover, kept down by the failing OPTIONS probes): no more calls
            # are even tried on the dead instance.
            time.sleep(2.5)  # two probe intervals, so a wrongly revived destination would be back
            mark = len(kamailio.log())
            call_through(edge_port, 5)
            later = kamailio.log()[mark:]
            assert calls_seen(a) - before_a == 15
            assert len(re.findall(r"DISPATCH INVITE", later)) == 5, later[-3000:]
            assert f"to sip:{HOST}:{b.port(inner)}" not in later, later[-3000:]
            assert "FAILOVER" not in later, later[-3000:]


def test_edge_flood_layers_act_per_source_and_per_edge(tmp_path: Path) -> None:
    """pike blocks one flooding source (its requests are dropped) while another source is still
    answered; the INVITE ratelimit pipe answers 503 above its rate whoever sends."""
    edge_port = free_port("both")
    with instance("udp") as a:
        dispatcher = tmp_path / "dispatcher.list"
        dispatcher.write_text(dispatcher_line("udp", a))
        base = {
            "LISTEN_IP": HOST,
            "SIP_PORT": str(edge_port),
            "DISPATCHER_LIST": f'"{dispatcher}"',
            "WORKERS": "2",
            "ALLOW_NETS": '"127.0.0.0/8"',
        }
        # pike: 5 requests per 2 s per source.
        with Kamailio(
            edge_config(base | {"PIKE_REQS": "5"}), wait_for=(HOST, edge_port, "udp")
        ) as k:
            # pike samples in sub-windows, so the exact cut-off varies by a few requests.
            answers = [
                options_from("127.0.0.3", edge_port, wait=0.3, retransmit=False) for _ in range(20)
            ]
            answered = [s for s in answers if s is not None]
            assert 1 <= len(answered) <= 12, answers
            assert all(s.startswith("SIP/2.0 200") for s in answered), answers
            assert answers[-3:] == [None, None, None], answers
            other = options_from("127.0.0.4", edge_port, wait=3.0)
            assert other is not None and other.startswith("SIP/2.0 200"), k.log()[-2000:]
            assert "pike: 127.0.0.3 over" in k.log()
        # The INVITE pipe: 2 new INVITEs a second for the whole edge; SIPp offers 20 a second.
        config = edge_config(base | {"PIKE_REQS": "1000", "INVITE_RATE": '"1:TAILDROP:2"'})
        with Kamailio(config, wait_for=(HOST, edge_port, "udp")) as k:
            result = run_sipp(
                [
                    "-sf", str(SCENARIOS / "uac_rr.xml"), f"{HOST}:{edge_port}",
                    "-s", "bob", "-i", HOST, "-p", str(free_port("udp")),
                    "-m", "40", "-r", "20", "-l", "40", "-d", "100", "-recv_timeout", "5000",
                ],
                timeout=60,
            )  # fmt: skip
            limited = k.log().count("INVITE rate above the edge limit")
        assert result.successful >= 2 and result.failed >= 10, result.explain()
        assert limited == result.failed, (limited, result.explain())


def _proxied_instance(allowed: str) -> Answerer:
    # The edge (HOST) is a trusted proxy: its X-IF-Source names the caller. Its own OPTIONS probes
    # carry none and are judged as its own, so its address stays flood-exempt and allowlisted.
    return Answerer(
        f"udp:{HOST}:0", verbose=True,
        extra=["--trusted", f"{HOST}/32", "--trusted-proxy", f"{HOST}/32",
               "--allow", f"{HOST}/32", "--allow", f"{allowed}/32"],
    )  # fmt: skip


def _invite_status(
    source: str, port: int, headers: tuple[tuple[str, str], ...] = ()
) -> tuple[int, str] | None:
    client = SipClient((HOST, port), source=source, timeout=4.0)
    try:
        resp = client.request("INVITE", body=SDP, headers=headers)
        return None if resp is None else (resp.status, resp.reason)
    finally:
        client.close()


NOT_ALLOWLISTED = (403, "Forbidden - IP Not Allowlisted")
FORGED = (("X-IF-Source", "udp:127.0.0.2:5060"),)


def test_instance_allowlist_sees_the_caller_behind_the_edge(tmp_path: Path) -> None:
    """With the edge in --trusted-proxy, an instance's own allowlist acts on the caller the edge saw:
    a call from 127.0.0.2 through the edge is refused by the instance when 127.0.0.2 is not in its
    allowlist and completes (INVITE, ACK, BYE, each named by the edge) when it is. A caller that is not
    the edge gains nothing by writing X-IF-Source, directly or through the edge."""
    edge_port = free_port("both")
    with _proxied_instance("127.0.0.4") as refusing, _proxied_instance("127.0.0.2") as admitting:
        for inst, expect_ok in ((refusing, False), (admitting, True)):
            dispatcher = tmp_path / f"dispatcher-{inst.port()}.list"
            dispatcher.write_text(dispatcher_line("udp", inst))
            defines = {
                "LISTEN_IP": HOST,
                "SIP_PORT": str(edge_port),
                "DISPATCHER_LIST": f'"{dispatcher}"',
                "PIKE_REQS": "1000",
                "WORKERS": "2",
                "ALLOW_NETS": '"127.0.0.0/8"',  # the edge lets everyone on loopback through
            }
            with Kamailio(edge_config(defines), wait_for=(HOST, edge_port, "udp")) as kamailio:
                result = run_sipp(
                    [
                        "-sf", str(SCENARIOS / "uac_rr.xml"), f"{HOST}:{edge_port}",
                        "-s", "bob", "-i", "127.0.0.2", "-p", str(free_port("udp", "127.0.0.2")),
                        "-m", "3", "-r", "5", "-d", "200", "-recv_timeout", "5000",
                    ],
                    timeout=60,
                )  # fmt: skip
                # A forged X-IF-Source through the edge: the edge replaces it with the real one.
                forged_via_edge = _invite_status("127.0.0.3", edge_port, FORGED)
                log = kamailio.log()
            assert "not in the edge allowlist" not in log, log[-2000:]
            assert forged_via_edge == NOT_ALLOWLISTED, forged_via_edge
            if expect_ok:
                assert result.ok and result.successful == 3, result.explain()
                assert calls_seen(inst) == 3
            else:
                assert result.successful == 0 and result.failed == 3, result.explain()
                assert calls_seen(inst) == 0

        # Directly, not through the edge: the header is stripped, the socket's address decides.
        port = admitting.port()
        assert _invite_status("127.0.0.3", port, FORGED) == NOT_ALLOWLISTED
        direct = SipClient((HOST, port), source="127.0.0.2", timeout=4.0)
        try:
            options = direct.request("OPTIONS")
        finally:
            direct.close()
        assert options is not None and options.status == 200  # the allowlist does let .2 in
    # The refusals were the instances' own allowlist, each request from its real caller.
    assert "'allowlist:not_allowlisted': 4" in refusing.output(), refusing.output()[-1500:]
    assert "'allowlist:not_allowlisted': 2" in admitting.output(), admitting.output()[-1500:]
    assert "'proxied': " in admitting.output()


def _spoofed_udp(source: tuple[str, int], target: tuple[str, int], payload: bytes) -> None:
    """One UDP datagram whose IPv4 source address and port are ``source`` (a raw socket, root):
    what a blind attacker can put on the wire; UDP has no handshake to prove it."""
    udp = struct.pack("!HHHH", source[1], target[1], 8 + len(payload), 0)  # checksum 0: none
    # Version/IHL, TOS, total length, id, fragment, TTL, protocol 17 (UDP), checksum (the kernel
    # fills in length and checksum with IPPROTO_RAW), source, destination.
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, socket.IPPROTO_UDP, 0,
        socket.inet_aton(source[0]), socket.inet_aton(target[0]),
    )  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ip + udp + payload, target)


def _final_status(sock: socket.socket, wait: float) -> str | None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            status = sock.recv(65535).decode(errors="replace").split("\r\n", 1)[0]
        except TimeoutError:
            continue
        if not status.startswith("SIP/2.0 1"):
            return status
    return None


def test_a_caller_spoofing_an_instance_address_over_udp_cannot_name_its_source(
    tmp_path: Path, dev_cert: tuple[Path, Path]
) -> None:
    """The edge exempts requests from its dispatcher list (its instances) from the flood and allowlist
    layers and from writing X-IF-Source. Over UDP "from an instance" is only what the datagram says:
    a blind attacker who writes an instance's address and port as the source, and X-IF-Source naming an
    address the instance allowlists, must not get through as that address. The instance (TLS from the
    edge, as in production, on 127.0.0.5) allowlists the edge and 127.0.0.4; controls: a real caller
    on 127.0.0.4 is admitted, a real caller on 127.0.0.3 forging 127.0.0.4 is refused."""
    inst_ip, edge_port = "127.0.0.5", free_port("both")
    with Answerer(
        f"tls:{inst_ip}:0", tls=dev_cert, verbose=True,
        extra=["--trusted", f"{HOST}/32", "--trusted-proxy", f"{HOST}/32",
               "--allow", f"{HOST}/32", "--allow", "127.0.0.4/32",
               "--require-tls", "--tls-loopback-strict"],
    ) as inst:  # fmt: skip
        dispatcher = tmp_path / "dispatcher.list"
        dispatcher.write_text(f"1 sip:{inst_ip}:{inst.port('tls')};transport=tls 0 0\n")
        defines = {
            "LISTEN_IP": HOST,
            "SIP_PORT": str(edge_port),
            "DISPATCHER_LIST": f'"{dispatcher}"',
            "PIKE_REQS": "1000",
            "WORKERS": "2",
            "ALLOW_NETS": '"127.0.0.0/8"',
            "SIPS_PORT": str(free_port("tcp")),
            "TLS_CONFIG": f'"{tls_edge_config(tmp_path, dev_cert)}"',
        }
        with Kamailio(edge_config(defines, with_tls=True), wait_for=(HOST, edge_port, "udp")):
            admitted = _invite_status("127.0.0.4", edge_port)
            forged = _invite_status(
                "127.0.0.3", edge_port, (("X-IF-Source", "udp:127.0.0.4:5060"),)
            )
            # The attacker receives on inst_ip (its Via, without rport: the edge answers there).
            client = SipClient((HOST, edge_port), source=inst_ip, timeout=1.0)
            try:
                invite = client.build(
                    "INVITE", body=SDP, headers=(("X-IF-Source", "udp:127.0.0.4:5060"),)
                ).replace(b";rport", b"", 1)
                _spoofed_udp((inst_ip, inst.port("tls")), (HOST, edge_port), invite)
                spoofed = _final_status(client._sock, 6.0)  # type: ignore[arg-type]
            finally:
                client.close()
    assert admitted is not None and admitted[0] == 200, admitted
    assert forged == NOT_ALLOWLISTED, forged
    # The edge names the datagram's real source, which the instance does not allowlist.
    assert spoofed == "SIP/2.0 403 Forbidden - IP Not Allowlisted", (spoofed, inst.output()[-2000:])
    assert calls_seen(inst) == 1, inst.output()[-2000:]
