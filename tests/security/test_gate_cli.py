"""Each layer end to end: ``ifescalate sip answer`` with the security flags, attacked over real
loopback sockets from other loopback addresses (127.0.0.2, .3, ...). Every wait is bounded."""

from __future__ import annotations

import statistics
import time

from ifescalate.sip.message import Response

from .sipclient import SDP, SipClient, answerer, security_stats


def _status(resp: Response | None) -> tuple[int, str] | None:
    return None if resp is None else (resp.status, resp.reason)


def test_flood_503_then_block_per_source_and_trusted_exempt() -> None:
    with answerer("--flood", "5/10", "--trusted", "127.0.0.4/32") as (port, out):
        attacker = SipClient(("127.0.0.1", port), source="127.0.0.2")
        got = [_status(attacker.request("OPTIONS")) for _ in range(5)]
        assert got == [(200, "OK")] * 5
        tripped = attacker.request("OPTIONS")
        assert tripped is not None and tripped.status == 503
        assert tripped.headers.get("Retry-After") == "120"
        # Blocked for 120 s: even a quiet request later in the window is refused.
        blocked = attacker.request("OPTIONS")
        assert blocked is not None and blocked.status == 503
        assert 118 <= int(blocked.headers.get("Retry-After") or 0) <= 120
        # Another source is counted on its own; a trusted one never.
        other = SipClient(("127.0.0.1", port), source="127.0.0.3")
        assert _status(other.request("OPTIONS")) == (200, "OK")
        trusted = SipClient(("127.0.0.1", port), source="127.0.0.4")
        assert [_status(trusted.request("OPTIONS")) for _ in range(20)] == [(200, "OK")] * 20
    stats = security_stats(out)
    assert "'flood:rate_exceeded': 1" in stats and "'flood:blocked': 1" in stats


def test_in_dialog_bye_of_an_established_call_is_not_starved() -> None:
    with answerer("--flood", "3/10") as (port, _):
        c = SipClient(("127.0.0.1", port), source="127.0.0.2")
        call_id, tag = "dlg1", "ftag1"
        resp = c.request("INVITE", call_id=call_id, from_tag=tag, body=SDP)
        assert resp is not None and resp.status == 200
        dialog = c.ack_and_dialog(resp, call_id, tag)
        while (r := c.request("OPTIONS")) is not None and r.status != 503:
            pass
        assert r is not None and r.status == 503  # the source is now blocked
        bye = c.bye(dialog)
        assert bye is not None and bye.status == 200, bye
        # A made-up in-dialog request (a To tag alone) is not exempt.
        fake = c.request("BYE", to="<sip:bob@127.0.0.1>;tag=forged")
        assert fake is not None and fake.status == 503


def test_allowlist_403() -> None:
    with answerer("--allow", "127.0.0.2/32") as (port, _):
        ok = SipClient(("127.0.0.1", port), source="127.0.0.2")
        assert _status(ok.request("OPTIONS")) == (200, "OK")
        bad = SipClient(("127.0.0.1", port), source="127.0.0.3")
        assert _status(bad.request("OPTIONS")) == (403, "Forbidden - IP Not Allowlisted")
        assert _status(bad.request("INVITE", body=SDP)) == (403, "Forbidden - IP Not Allowlisted")


def test_require_tls_403_over_plain_transports(dev_cert: tuple[object, object]) -> None:
    cert, key = dev_cert
    # Loopback is exempt by the rule; --tls-loopback-strict lifts the exemption so the layer can
    # be proved on a loopback-only host (the exemption itself is checked below).
    from .sipclient import free_udp_tcp_port

    tls_port = free_udp_tcp_port()
    flags = (
        "--require-tls",
        "--tls-loopback-strict",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    with answerer(*flags, extra_listen=[f"tls:127.0.0.1:{tls_port}"]) as (port, _):
        udp = SipClient(("127.0.0.1", port), source="127.0.0.2")
        assert _status(udp.request("OPTIONS")) == (403, "Forbidden - TLS Required")
        tcp = SipClient(("127.0.0.1", port), source="127.0.0.2", transport="TCP")
        assert _status(tcp.request("OPTIONS")) == (403, "Forbidden - TLS Required")
        tls = SipClient(("127.0.0.1", tls_port), source="127.0.0.2", transport="TLS")
        assert _status(tls.request("OPTIONS")) == (200, "OK")
    with answerer("--require-tls") as (port, _):
        udp = SipClient(("127.0.0.1", port), source="127.0.0.2")
        assert _status(udp.request("OPTIONS")) == (200, "OK")  # loopback exempt by default


def test_lockout_after_five_failures_even_with_the_right_password() -> None:
    flags = ("--auth", "alice:s3cret", "--lockout", "5/300", "--flood", "1000/10")
    with answerer(*flags) as (port, out):
        c = SipClient(("127.0.0.1", port), source="127.0.0.2")
        for _ in range(4):
            resp, _ = c.authed("MESSAGE", "alice", "wrong")
            assert _status(resp) == (401, "Unauthorized")
        fifth, _ = c.authed("MESSAGE", "alice", "wrong")
        assert _status(fifth) == (403, "Forbidden")
        right, _ = c.authed("MESSAGE", "alice", "s3cret")
        assert _status(right) == (403, "Forbidden")
        # Per user and address: alice from elsewhere, and the source for another name, still work.
        other = SipClient(("127.0.0.1", port), source="127.0.0.3")
        assert _status(other.authed("MESSAGE", "alice", "s3cret")[0]) == (200, "OK")
        call, _ = other.authed("INVITE", "alice", "s3cret", body=SDP)
        assert _status(call) == (200, "OK")
    assert "'digest:locked_out': 2" in security_stats(out)


def _shape(resp: Response | None) -> bytes:
    """The response bytes without what is random per response (tags, nonces)."""
    assert resp is not None
    import re

    raw = resp.to_bytes()
    raw = re.sub(rb"tag=[^;\r\n>]+", b"tag=X", raw)
    raw = re.sub(rb'nonce="[^"]+"', b'nonce="X"', raw)
    return re.sub(rb"(Call-ID: |branch=|received=|rport=)[^;\r\n]+", rb"\1X", raw)


def test_unknown_user_and_wrong_password_look_the_same() -> None:
    flags = ("--auth", "alice:s3cret", "--lockout", "1000/300", "--flood", "10000/10")
    with answerer(*flags) as (port, _):
        c = SipClient(("127.0.0.1", port), source="127.0.0.2")
        real, _ = c.authed("MESSAGE", "alice", "wrong")
        fake, _ = c.authed("MESSAGE", "nosuchuser", "wrong")
        # To and From name the user asked for: compare with the name replaced.
        assert _shape(real).replace(b"alice", b"U") == _shape(fake).replace(b"nosuchuser", b"U")
        timings: dict[str, list[float]] = {"alice": [], "nosuchuser": []}
        for i in range(120):
            user = "alice" if i % 2 else "nosuchuser"
            t0 = time.perf_counter()
            resp, _ = c.authed("MESSAGE", user, "wrong")
            timings[user].append(time.perf_counter() - t0)
            assert resp is not None and resp.status == 401
    a, b = (statistics.median(timings[u]) for u in ("alice", "nosuchuser"))
    spread = statistics.pstdev(timings["alice"] + timings["nosuchuser"])
    print(f"median alice {a * 1e6:.0f} us, unknown {b * 1e6:.0f} us, spread {spread * 1e6:.0f} us")
    assert abs(a - b) < max(0.25 * max(a, b), spread), (a, b, spread)


def test_digest_replay_of_the_same_nonce_and_nc_is_refused() -> None:
    flags = ("--auth", "alice:s3cret", "--flood", "1000/10")
    with answerer(*flags) as (port, out):
        c = SipClient(("127.0.0.1", port), source="127.0.0.2")
        resp, sent = c.authed("MESSAGE", "alice", "s3cret")
        assert _status(resp) == (200, "OK") and sent is not None
        # The very same credentials in a new transaction (new branch): nonce and nc replayed.
        replay = sent.replace(b"branch=z9hG4bK", b"branch=z9hG4bKreplay", 1)
        c.send(replay)
        again = c.recv()
        assert _status(again) == (401, "Unauthorized")
        assert again is not None and "stale=true" not in (
            again.headers.get("WWW-Authenticate") or ""
        )
    assert "'digest:invalid_credentials': 1" in security_stats(out)


def test_drop_failed_invites_silently() -> None:
    with answerer("--allow", "127.0.0.2/32", "--drop-failed") as (port, out):
        bad = SipClient(("127.0.0.1", port), source="127.0.0.3", timeout=1.0)
        assert bad.request("INVITE", body=SDP) is None  # not a byte back
        assert _status(bad.request("OPTIONS")) == (403, "Forbidden - IP Not Allowlisted")
    assert "'dropped_silently': 1" in security_stats(out)
