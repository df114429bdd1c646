"""Who sent a request that came through a trusted proxy (the Kamailio edge).

Behind the edge the transport peer of every request is the edge, so the per-source layers (flood,
allowlist) and the audit would see one source for all callers. The edge knows the caller's
address and writes it into ``X-IF-Source: proto:ip:port`` after deleting any copy the caller sent
(deploy/kamailio/kamailio.cfg, ``route[SOURCE]``). That header is a fact only because the edge
wrote it, so it is believed only when the request's transport peer is inside
``security.trusted_proxies`` *and* the hop cannot be forged from elsewhere:

* TCP or TLS: the peer address was proven by the TCP handshake (a blind spoofer never completes
  it);
* UDP only from a loopback proxy: a datagram's source address is whatever the sender wrote, but
  the kernel drops 127.0.0.0/8 and ::1 sources arriving from outside (RFC 1122 §3.2.1.3, RFC
  4291 §2.5.3), so only a process on this host can send it.

From any other peer the header is stripped like every ``X-IF-*`` header (``hygiene``) and has no
effect. From a trusted proxy, one well-formed header names the source; a malformed or repeated one
is refused with 400 (fail closed: treating it as the proxy itself would let the request pass as
the proxy, which is usually flood-exempt). A trusted proxy's request without the header is the
proxy's own (its OPTIONS probes): its source is the proxy.

This is the same pattern as HTTP's ``X-Forwarded-For`` behind a trusted reverse proxy (RFC 7239
§8.1: "the header can only be trusted when it was added by a proxy under the receiver's control").
Only one proxy hop is supported: the edge talks to the instances directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .facts import IPNetwork, Layer, Reject, in_networks, is_loopback, parse_ip

SOURCE_HEADER = "X-IF-Source"
_TRANSPORTS = frozenset({"udp", "tcp", "tls", "sctp", "ws", "wss"})

BAD_SOURCE = Reject(400, "Bad Request - Invalid X-IF-Source", Layer.ALLOWLIST, "bad_proxy_source")


@dataclass(frozen=True, slots=True)
class Origin:
    """The source the security layers act on, and the proxy that vouched for it (None: direct)."""

    source: str
    proxy: str | None = None


def parse_source_header(value: str) -> str:
    """The caller's address from ``proto:ip:port`` (Kamailio's ``$pr:$si:$sp``; IPv6 addresses
    may come with or without brackets). Raises ValueError naming what is wrong."""
    proto, sep, rest = value.strip().partition(":")
    if not sep or proto.lower() not in _TRANSPORTS:
        raise ValueError(f"{SOURCE_HEADER}: expected proto:ip:port, got {value!r}")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{SOURCE_HEADER}: bad port in {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(parse_ip(host))
    except ValueError:
        raise ValueError(f"{SOURCE_HEADER}: not an IP address in {value!r}") from None


def proxy_may_vouch(peer: str, transport: str, proxies: Sequence[IPNetwork]) -> bool:
    """Whether ``peer`` is a trusted proxy over a hop that cannot be forged (module docstring)."""
    if not proxies:
        return False
    addr = parse_ip(peer)
    if not in_networks(addr, proxies):
        return False
    return transport.lower() in ("tcp", "tls") or is_loopback(addr)


def origin(
    peer: str, transport: str, claimed: Sequence[str], proxies: Sequence[IPNetwork]
) -> Origin | Reject:
    """Where a request comes from: ``claimed`` are its ``X-IF-Source`` values (read before the
    hygiene strips them), believed only from a trusted proxy."""
    if not claimed or not proxy_may_vouch(peer, transport, proxies):
        return Origin(peer)
    if len(claimed) != 1:
        return BAD_SOURCE
    try:
        return Origin(parse_source_header(claimed[0]), peer)
    except ValueError:
        return BAD_SOURCE
