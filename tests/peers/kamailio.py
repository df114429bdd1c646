"""Kamailio 5.6 as a real SIP proxy in front of (or behind) the code under test.

`Kamailio(config)` checks the config with `kamailio -c`, runs it in the foreground in its own process group,
waits for its first listening port and stops it afterwards, printing its log when the block failed.
`proxy_config(...)` builds the record-routing stateful proxy that most interop tests need.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from .proc import PeerError, PeerProcess, require_binary, wait_log, wait_port

Transport = Literal["udp", "tcp", "tls"]

MODULE_PATH = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"


READY = "kamailio-ready"
"""Logged by `proxy_config` configs once the first worker has initialised (modules' child init passed)."""


@dataclass(frozen=True, slots=True)
class ProxyTls:
    """Kamailio's TLS settings: its certificate (server side, and offered as client), its TLS listener
    `port` (needed even to only forward over TLS: Kamailio sends from a listening socket of the same
    transport), and the CA to verify TLS servers it forwards to (None: no verification, loopback tests)."""

    cert: Path
    key: Path
    port: int
    ca: Path | None = None


def proxy_config(
    *,
    port: int,
    target: tuple[str, int, Transport],
    host: str = "127.0.0.1",
    tls: ProxyTls | None = None,
    children: int = 2,
    record_route: bool = True,
    log_requests: bool = False,
    debug: int = 2,
) -> str:
    """Config text for a stateful proxy listening on UDP and TCP `host:port` (and TLS on `tls.port`) that
    relays every out-of-dialog request to `target` = (host, port, transport) and routes in-dialog requests
    by their Route set (RFC 3261 section 16.12, loose routing).

    Traps handled here (see PEERS.md): replies over TCP/TLS reuse the inbound connection
    (`set_reply_no_connect`, avoids the OpenSSL 3 crash of kamailio issue 3791), and out-of-dialog OPTIONS
    addressed to the proxy itself (no user part) are answered 200 directly. With `log_requests`, every
    request is logged as `REQUEST <method> <r-uri> route=<Route> from <proto>:<ip>:<port>` for assertions.
    """
    target_host, target_port, target_transport = target
    listens = [f"listen=udp:{host}:{port}", f"listen=tcp:{host}:{port}"]
    modules = ["tm", "sl", "rr", "maxfwd", "textops", "siputils", "pv", "xlog"]
    if target_transport == "tls" and tls is None:
        raise ValueError(
            "forwarding over TLS needs tls=ProxyTls(cert, key): Kamailio's tls module wants one"
        )
    tls_params = ""
    if tls is not None:
        listens.append(f"listen=tls:{host}:{tls.port}")
        modules.append("tls")
        tls_params = 'modparam("tls", "config", "tls.cfg")\n'
    loads = "\n".join(f'loadmodule "{name}.so"' for name in modules)
    rr = "record_route();" if record_route else ""
    trace = (
        'xlog("L_NOTICE", "REQUEST $rm $ru route=$hdr(Route) from $pr:$si:$sp\\n");'
        if log_requests
        else ""
    )
    destination = f"sip:{target_host}:{target_port};transport={target_transport}"
    return f"""#!KAMAILIO
debug={debug}
log_stderror=yes
log_prefix="{{$mt $hdr(CSeq) $ci}} "
children={children}
tcp_children={children}
auto_aliases=no
alias="{host}:{port}"
{"enable_tls=yes" if "tls" in modules else ""}
{chr(10).join(listens)}
mpath="{MODULE_PATH}"
{loads}
modparam("tm", "fr_timer", 5000)
modparam("tm", "fr_inv_timer", 30000)
modparam("rr", "enable_full_lr", 1)
{tls_params}
request_route {{
    {trace}
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    # Replies go back over the connection the request came on (PEERS.md: kamailio issue 3791).
    if (proto == TLS || proto == TCP) {{
        set_reply_no_connect();
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            if (!t_relay()) {{
                sl_reply_error();
            }}
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    # OPTIONS to the proxy itself (no user part): answer, a non-default port is not seen as "myself".
    if (is_method("OPTIONS") && $rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    # Absorb retransmissions of requests already being handled.
    t_check_trans();
    if (is_method("INVITE|SUBSCRIBE|REFER")) {{
        {rr}
    }}
    $du = "{destination}";
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}

event_route[core:worker-one-init] {{
    xlog("L_NOTICE", "{READY}\\n");
}}
"""


def tls_config(tls: ProxyTls) -> str:
    """Kamailio tls module config, TLS 1.2+ both ways. The server section is always written: without it
    the module looks for ./cert.pem and fails in child init even when nothing listens on TLS."""
    server = (
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"
        f"certificate = {tls.cert}\nprivate_key = {tls.key}\n"
    )
    verify = "no" if tls.ca is None else f"yes\nca_list = {tls.ca}"
    client = (
        "[client:default]\nmethod = TLSv1.2+\n"
        f"certificate = {tls.cert}\nprivate_key = {tls.key}\nverify_certificate = {verify}\n"
    )
    return f"{server}\n{client}"


class Kamailio:
    """Run Kamailio with `config` for the length of a `with` block.

    `wait_for` = (host, port, "udp"|"tcp") is awaited before the block starts, then, for `proxy_config`
    configs, the READY line its first worker logs. Kamailio dying during the block is a PeerError. The config and the tls.cfg live in a fresh temporary directory, which
    is also Kamailio's working directory (relative paths in the config resolve there); it is removed after
    a clean exit, kept after a failure, and never removed when given as `workdir`.
    """

    def __init__(
        self,
        config: str,
        *,
        wait_for: tuple[str, int, Literal["udp", "tcp"]],
        tls: ProxyTls | None = None,
        shm_mb: int = 256,
        pkg_mb: int = 16,
        start_timeout: float = 15.0,
        workdir: Path | None = None,
    ) -> None:
        self._keep = workdir is not None
        self.dir = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="kamailio-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "kamailio.cfg"
        self.config_path.write_text(config)
        if tls is not None:
            (self.dir / "tls.cfg").write_text(tls_config(tls))
        elif "tls.cfg" in config:
            raise ValueError("this config loads tls.cfg: pass tls=ProxyTls(...)")
        self.ready_marker = READY if READY in config else None
        self.wait_for = wait_for
        self.start_timeout = start_timeout
        argv = [
            "kamailio", "-f", str(self.config_path), "-DD", "-E",
            "-m", str(shm_mb), "-M", str(pkg_mb), "-P", str(self.dir / "kamailio.pid"),
        ]  # fmt: skip
        self.process = PeerProcess(
            "kamailio", argv, log_path=self.dir / "kamailio.log", cwd=self.dir
        )

    def check(self) -> None:
        """`kamailio -c`: raise PeerError with Kamailio's own message when the config is rejected."""
        binary = require_binary("kamailio")
        done = subprocess.run(
            [binary, "-c", "-f", str(self.config_path)],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise PeerError(
                f"kamailio -c rejected {self.config_path} (exit {done.returncode}):\n"
                f"{done.stdout}{done.stderr}\n----- config -----\n{_numbered(self.config_path)}"
            )

    def __enter__(self) -> Kamailio:
        self.check()
        self.process.start()
        try:
            host, port, kind = self.wait_for
            wait_port(host, port, kind, timeout=self.start_timeout, process=self.process)
            if self.ready_marker is not None:
                # Sockets are bound before the workers initialise their modules (tls can still fail).
                wait_log(self.process, self.ready_marker, timeout=self.start_timeout)
        except BaseException:
            self.process.kill()
            print(self.process.log_tail(), file=sys.stderr)
            raise
        return self

    def log(self) -> str:
        return self.process.log()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        died = self.process.returncode
        self.process.stop(grace=5.0)
        if exc_type is not None or died is not None:
            print(self.process.log_tail(120), file=sys.stderr)
        if died is not None and exc_type is None:
            raise PeerError(
                f"kamailio exited with status {died} while in use\n{self.process.log_tail()}"
            )
        if exc_type is None and not self._keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def _numbered(path: Path) -> str:
    lines = path.read_text().splitlines()
    return "\n".join(f"{n:4} {line}" for n, line in enumerate(lines, 1))
