"""Out-of-dialog request construction for a user agent client (RFC 3261 §8.1.1).

A request built here carries the six mandatory header fields of §8.1.1 (To, From, CSeq, Call-ID,
Max-Forwards, Via), a Contact when the method needs one (§8.1.1.8) and, when the caller preloads a
route set (§8.1.1.1, typically the outbound proxy), Route header fields formed by the loose/strict
routing rules of §12.2.1.1 and §16.12.

The small name-addr helpers at the bottom are shared with ``dialog.py``: the dialog layer needs only
the URI, the tag and the ``lr`` flag of a header value, and keeping that here avoids parsing every
field into a typed object on the hot path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .build import MAGIC_COOKIE
from .errors import SipParseError
from .message import Headers, Request

if TYPE_CHECKING:
    from .uri import SipUri

__all__ = [
    "DEFAULT_MAX_FORWARDS",
    "apply_route_set",
    "format_via",
    "is_loose_route",
    "name_addr_params",
    "name_addr_tag",
    "name_addr_uri",
    "new_request",
    "next_hop_uri",
    "request_uri_from",
    "strip_tag",
    "wrap_name_addr",
]

#: §8.1.1.6: a UAC SHOULD set Max-Forwards to 70.
DEFAULT_MAX_FORWARDS = 70

_TRANSPORTS = frozenset({"UDP", "TCP", "TLS", "SCTP", "WS", "WSS"})

#: §8.1.1.8: methods that establish a dialog or refresh its target carry a Contact.
_NEEDS_CONTACT = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY", "UPDATE"})


def new_request(
    method: str,
    request_uri: str | SipUri,
    *,
    from_addr: str,
    from_tag: str,
    to_addr: str,
    call_id: str,
    cseq: int,
    via_host: str,
    via_port: int | None,
    transport: str,
    branch: str,
    contact: str | None,
    max_forwards: int = DEFAULT_MAX_FORWARDS,
    route: list[str] | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """Build a request outside any dialog (§8.1.1).

    ``from_addr`` and ``to_addr`` are name-addr text (``Alice <sip:alice@example.com>``); a bare URI is
    wrapped in ``<>`` so the ``;tag=`` added to From is a header parameter, not a URI one (§20.10).
    ``route`` is a preloaded route set (§8.1.1.1): URIs or name-addrs, first hop first. Loose routers
    (``;lr``) go into Route and the Request-URI stays the target; if the first hop is a strict
    router the request is rewritten as §12.2.1.1 prescribes. ``next_hop_uri(request_uri, route)``
    says where to send it (§8.1.2).
    """
    method = _check_method(method)
    if not 0 <= cseq < 2**31:
        # §8.1.1.5: the sequence number MUST be expressible as a 32-bit unsigned integer and less
        # than 2**31.
        raise ValueError(f"CSeq number out of range: {cseq}")
    if not 0 <= max_forwards <= 255:
        raise ValueError(f"Max-Forwards out of range: {max_forwards}")
    if method in _NEEDS_CONTACT and contact is None:
        raise ValueError(f"{method} needs a Contact (RFC 3261 §8.1.1.8)")
    ruri, route_values = apply_route_set(str(request_uri), route or [])
    h = Headers()
    h.add("Via", format_via(transport, via_host, via_port, branch))
    h.add("Max-Forwards", str(max_forwards))
    for value in route_values:
        h.add("Route", value)
    h.add("To", wrap_name_addr(to_addr))
    h.add("From", f"{wrap_name_addr(from_addr)};tag={from_tag}")
    h.add("Call-ID", call_id)
    h.add("CSeq", f"{cseq} {method}")
    if contact is not None:
        h.add("Contact", wrap_name_addr(contact))
    add_extra_headers(h, headers, body, content_type)
    return Request(method=method, uri=ruri, headers=h, body=body)


def format_via(transport: str, host: str, port: int | None, branch: str) -> str:
    """A Via value for a new client transaction (§8.1.1.7) asking for ``rport`` (RFC 3581 §3).

    ``rport`` without a value asks the server to send responses back to the source port it saw, which
    is what makes a UA behind NAT reachable over UDP.
    """
    transport = transport.upper()
    if transport not in _TRANSPORTS:
        raise ValueError(f"unknown transport: {transport!r}")
    if not branch.startswith(MAGIC_COOKIE) or len(branch) <= len(MAGIC_COOKIE):
        # §8.1.1.7: the branch MUST start with the magic cookie so RFC 3261 matching applies.
        raise ValueError(f"branch must start with {MAGIC_COOKIE!r}: {branch!r}")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # §25.1 IPv6reference in a Via sent-by
    sent_by = host if port is None else f"{host}:{port}"
    return f"SIP/2.0/{transport} {sent_by};branch={branch};rport"


def add_extra_headers(
    h: Headers,
    headers: list[tuple[str, str]] | None,
    body: bytes,
    content_type: str | None,
) -> None:
    """Append caller headers, then Content-Type when there is a body (§7.4.1)."""
    for name, value in headers or ():
        h.add(name, value)
    if body and content_type is None and "Content-Type" not in h:
        # §7.4.1: a non-empty body MUST come with Content-Type.
        raise ValueError("a body needs a Content-Type")
    if content_type is not None:
        h.set("Content-Type", content_type)


_METHOD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")


def _check_method(method: str) -> str:
    if not _METHOD_RE.match(method):
        raise ValueError(f"malformed method: {method!r}")
    return method


# --- Routing (§12.2.1.1, §16.12, §8.1.2) ---------------------------------------------------------


def apply_route_set(target: str, route_set: Sequence[str]) -> tuple[str, list[str]]:
    """Request-URI and Route values for ``target`` sent through ``route_set`` (§12.2.1.1).

    Empty route set: the Request-URI is the target and there is no Route. First hop a loose router
    (``lr`` present): the Request-URI is the target and Route is the route set, in order, with all
    its parameters. First hop a strict router: the Request-URI is the first route's URI (stripped of
    parameters not allowed in a Request-URI, §19.1.1), Route is the rest of the route set followed by
    the target as the last entry, so the target survives the strict router's rewriting.
    """
    routes = [wrap_name_addr(r) for r in route_set]
    if not routes:
        return request_uri_from(target), []
    if is_loose_route(routes[0]):
        return request_uri_from(target), routes
    ruri = request_uri_from(name_addr_uri(routes[0]))
    return ruri, [*routes[1:], f"<{target}>"]


def next_hop_uri(target: str, route_set: Sequence[str]) -> str:
    """Where a request for ``target`` through ``route_set`` goes first (§8.1.2).

    The first route's URI when there is a route set, loose or strict (for a strict first hop
    ``apply_route_set`` also made it the Request-URI), else the target. It is computed from the
    route set, not from a built request: after strict-route rewriting the first Route field of the
    request is no longer the next hop.
    """
    if not route_set:
        return request_uri_from(target)
    return name_addr_uri(wrap_name_addr(route_set[0]))


def is_loose_route(value: str) -> bool:
    """True when the route entry's URI has the ``lr`` parameter (§19.1.1, §16.12)."""
    uri = name_addr_uri(value)
    params = _uri_params(uri)
    return "lr" in params


def request_uri_from(uri: str) -> str:
    """``uri`` without what §19.1.1 forbids in a Request-URI: the method parameter and headers."""
    uri = uri.strip()
    q = uri.find("?")
    if q >= 0:
        uri = uri[:q]
    if ";" not in uri:
        return uri
    base, _, rest = uri.partition(";")
    kept = [p for p in rest.split(";") if p and p.split("=", 1)[0].strip().lower() != "method"]
    return ";".join([base, *kept])


def _uri_params(uri: str) -> set[str]:
    """Lower-cased names of the URI parameters of a SIP URI (before any ``?headers``)."""
    q = uri.find("?")
    if q >= 0:
        uri = uri[:q]
    parts = uri.split(";")[1:]
    return {p.split("=", 1)[0].strip().lower() for p in parts if p.strip()}


# --- name-addr helpers (§20.10, §25.1) -----------------------------------------------------------


def _split_name_addr(value: str) -> tuple[str, str, str]:
    """Split ``[display] <uri> params`` or ``addr-spec params`` into (display, uri, params-text).

    For the addr-spec form, §20.10 says every ``;`` parameter belongs to the header field, not the
    URI, which is why such URIs cannot carry parameters of their own.
    """
    text = value.strip()
    lt = _find_unquoted(text, "<")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError(f"unterminated <...> in name-addr: {value!r}")
        return text[:lt].strip(), text[lt + 1 : gt].strip(), text[gt + 1 :].strip()
    semi = text.find(";")
    if semi < 0:
        return "", text, ""
    return "", text[:semi].strip(), text[semi:].strip()


def _find_unquoted(text: str, ch: str) -> int:
    # Fast path: ``ch`` before any quote (or no quote at all, the usual From/To/Contact) is not
    # inside a quoted string; only a display name in quotes needs the scan below.
    pos = text.find(ch)
    quote = text.find('"')
    if quote < 0 or pos < quote:
        return pos
    in_quote = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == ch:
            return i
        i += 1
    return -1


def name_addr_uri(value: str) -> str:
    """The URI of a From/To/Contact/Route/Record-Route value, with its own parameters."""
    _, uri, _ = _split_name_addr(value)
    if not uri:
        raise SipParseError(f"no URI in {value!r}")
    return uri


def name_addr_params(value: str) -> dict[str, str | None]:
    """The header parameters after the URI (``tag``, ``expires``, ...), names lower-cased."""
    _, _, rest = _split_name_addr(value)
    out: dict[str, str | None] = {}
    for part in rest.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, val = part.partition("=")
        out[name.strip().lower()] = val.strip() if eq else None
    return out


# name_addr_tag results by value: a call's From and To recur in every message of the call and are
# asked for their tag several times per message (dialog ID, transaction matching). A pure function
# of the string; cleared when full to stay bounded.
_TAGS: dict[str, str | None] = {}
_TAGS_MAX = 8192


def name_addr_tag(value: str | None) -> str | None:
    """The ``tag`` parameter of a From or To value (§19.3), or None."""
    if value is None:
        return None
    try:
        return _TAGS[value]
    except KeyError:
        pass
    tag = name_addr_params(value).get("tag") or None
    if len(_TAGS) >= _TAGS_MAX:
        _TAGS.clear()
    _TAGS[value] = tag
    return tag


def strip_tag(value: str) -> str:
    """The From/To value without its ``tag`` parameter, in name-addr form (§12.1.1: the dialog's
    local and remote URIs; the tag is kept separately in the dialog ID)."""
    display, uri, rest = _split_name_addr(value)
    kept = [
        p.strip()
        for p in rest.split(";")
        if p.strip() and p.split("=", 1)[0].strip().lower() != "tag"
    ]
    head = f"{display} <{uri}>" if display else f"<{uri}>"
    return ";".join([head, *kept])


def wrap_name_addr(value: str) -> str:
    """``value`` in name-addr form: a name-addr is kept as is; anything else is taken as a whole URI
    and becomes ``<uri>``, so ``sip:p.example.com;lr`` keeps ``lr`` as a URI parameter."""
    text = value.strip()
    if _find_unquoted(text, "<") >= 0:
        return text
    return f"<{text}>"
