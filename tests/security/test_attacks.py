"""Real attack tools against ``ifescalate sip answer`` with the security layers on, loopback only,
every run bounded in count and time: SIPVicious (svmap, svwar, svcrack), a SIPp flood at ten
times the limit next to a legitimate caller, and openssl s_client with old protocols and weak
ciphers."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.peers import run_sipp

from .sipclient import SDP, SipClient, answerer, free_udp_tcp_port, security_stats

pytestmark = pytest.mark.interop


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} missing: pip install sipvicious")
    return path


def _run(argv: list[str], timeout: float = 60.0) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    return done.stdout + done.stderr


def test_svmap_finds_no_banner() -> None:
    with answerer("--flood", "30/10") as (port, _):
        out = _run([_tool("sipvicious_svmap"), "127.0.0.1", "-p", str(port), "-t", "0.05"])
    print(out)
    assert f"127.0.0.1:{port}" in out  # it answers OPTIONS, so svmap sees a SIP device...
    assert "ifescalate" not in out.lower()  # ...but no product or version banner


def _wordlist(path: Path, words: list[str]) -> Path:
    path.write_text("\n".join(words) + "\n")
    return path


def test_svwar_cannot_tell_the_real_user_from_made_up_ones(tmp_path: Path) -> None:
    words = [f"user{i:03d}" for i in range(20)]
    words.insert(11, "alice")
    flags = ("--auth", "alice:s3cret", "--flood", "1000/10", "--lockout", "5/300")
    with answerer(*flags) as (port, _):
        argv = [_tool("sipvicious_svwar"), "-d", str(_wordlist(tmp_path / "w", words)),
                "-m", "INVITE", "-p", str(port), "127.0.0.1", "-t", "0.05",
                "--maximumtime", "30"]  # fmt: skip
        report = _run(argv, timeout=60)
        forced = _run([*argv, "--force"], timeout=60)
    print(report, forced)
    # svwar's own sanity check sees that a made-up extension is answered like a real one...
    assert "authentication request for an unknown extension" in report
    # ...and forced on, it takes the made-up name's 401 as the "bad user" answer and finds
    # nothing, alice included: her answer is the same.
    assert "found nothing" in forced and "alice" not in forced, forced


def test_svcrack_never_finds_a_password_placed_60th(tmp_path: Path) -> None:
    words = [f"guess{i:03d}" for i in range(59)] + ["s3cret"] + [f"late{i}" for i in range(10)]
    wl = _wordlist(tmp_path / "pw", words)
    common = ("--auth", "alice:s3cret", "--auth-algorithm", "MD5", "--flood", "100000/10")
    argv = [_tool("sipvicious_svcrack"), "-u", "alice", "-d", str(wl), "-m", "INVITE",
            "-p", "PORT", "127.0.0.1", "-t", "0.02", "--maximumtime", "40"]  # fmt: skip
    # Control: without a lockout the same attack does find it (the tool works against us).
    with answerer(*common, "--lockout", "100000/300") as (port, _):
        control = _run([a if a != "PORT" else str(port) for a in argv], timeout=90)
    print(control)
    assert "s3cret" in control, control
    with answerer(*common, "--lockout", "5/300") as (port, out):
        attacked = _run([a if a != "PORT" else str(port) for a in argv], timeout=90)
    print(attacked)
    assert "s3cret" not in attacked
    stats = security_stats(out)
    print(stats)
    assert "digest:locked_out" in stats


def _legit_calls(port: int, n: int, results: list[str]) -> None:
    c = SipClient(("127.0.0.1", port), source="127.0.0.3", timeout=3.0)
    for i in range(n):
        call_id = f"legit{i}"
        first = c.request("INVITE", user="alice", call_id=call_id, from_tag=f"lt{i}", body=SDP)
        if first is None or first.status != 401:
            results.append(f"challenge {first.status if first else 'timeout'}")
            continue
        from ifescalate.sip.digest import DigestClient

        creds = DigestClient("alice", "s3cret").answer(
            first.headers.get_lines("WWW-Authenticate"),
            "INVITE",
            f"sip:alice@127.0.0.1:{port}",
            body=SDP,
        )
        c.send(
            c.build(
                "INVITE",
                user="alice",
                call_id=call_id,
                from_tag=f"lt{i}",
                cseq=2,
                authorization=creds,
                body=SDP,
            )
        )
        ok = c.recv()
        if ok is None or ok.status != 200:
            results.append(f"invite {ok.status if ok else 'timeout'}")
            continue
        dialog = c.ack_and_dialog(ok, call_id, f"lt{i}")
        bye = c.bye(dialog)
        results.append("ok" if bye is not None and bye.status == 200 else "bye failed")
        time.sleep(1.0)


def test_sipp_flood_from_one_address_does_not_stop_a_legitimate_caller() -> None:
    flags = ("--auth", "alice:s3cret", "--flood", "30/10", "--lockout", "5/300")
    legit: list[str] = []
    with answerer(*flags) as (port, out):
        caller = threading.Thread(target=_legit_calls, args=(port, 8, legit))
        caller.start()
        t0 = time.monotonic()
        # Ten times the limit: 30 calls/s for 10 s from 127.0.0.2.
        flood = run_sipp(["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.2", "-p", "0",
                          "-r", "30", "-m", "300", "-l", "300", "-recv_timeout", "2000",
                          "-timeout", "25s"], timeout=60)  # fmt: skip
        caller.join(timeout=60)
        elapsed = time.monotonic() - t0
    stats = security_stats(out)
    print(f"flood: {flood.explain()}; legit: {legit}; {elapsed:.1f} s; {stats}")
    assert legit == ["ok"] * 8
    # 127.0.0.2 gets its first ~30 requests through (challenged: 401), then 503 and a block.
    assert flood.successful == 0 and flood.created >= 250
    assert "flood:rate_exceeded': 1" in stats and "flood:blocked" in stats


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"], "TLS 1.0"),
        (["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], "TLS 1.1"),
        (["-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"], "RSA key transport + CBC"),
        (["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA:@SECLEVEL=0"], "CBC with SHA-1"),
        (["-tls1_2", "-cipher", "AES256-GCM-SHA384:@SECLEVEL=0"], "no forward secrecy"),
    ],
)
def test_openssl_old_protocols_and_weak_ciphers_are_refused(
    dev_cert: tuple[Path, Path], args: list[str], what: str
) -> None:
    cert, key = dev_cert
    tls_port = free_udp_tcp_port()
    flags = ("--require-tls", "--tls-cert", str(cert), "--tls-key", str(key))
    with answerer(*flags, extra_listen=[f"tls:127.0.0.1:{tls_port}"]):
        base = ["openssl", "s_client", "-connect", f"127.0.0.1:{tls_port}", "-brief"]
        refused = subprocess.run(
            [*base, *args], input="", capture_output=True, text=True, timeout=20
        )
        good = subprocess.run(
            [*base, "-tls1_2"], input="", capture_output=True, text=True, timeout=20
        )
    print(what, refused.stdout, refused.stderr)
    assert "Protocol version: TLSv1.2" in good.stderr + good.stdout  # control: the server works
    assert refused.returncode != 0
    assert "Protocol version" not in refused.stderr + refused.stdout
