"""Typed views of header values: Via, name-addr / addr-spec, generic parameters (RFC 3261 §20, §25.1).

These parse one header *value* (one element of a comma-separated list: use ``Headers.values`` or
``Headers.get`` first). ``parse_via`` and ``parse_name_addr`` run for every message at thousands of
calls per second, so the common shapes take a short path of ``str.find`` and slicing.

Header parameters (``;tag=``, ``;branch=``, ``;expires=``) keep their value **as received**,
including the quotes of a quoted-string value, so ``format_params`` reproduces them; names are
lowercased (§7.3.1: parameter names are case-insensitive).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from .errors import SipParseError, VersionNotSupported
from .uri import SipUri, parse_hostport, parse_uri

__all__ = [
    "NameAddr",
    "Via",
    "format_params",
    "parse_contacts",
    "parse_name_addr",
    "parse_params",
    "parse_via",
    "quote_string",
]

# token (§25.1) and the value forms of generic-param: token / host / quoted-string.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_GEN_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+\Z")
_WS = " \t"


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )`` (§25.1); a leading ";" is optional, LWS is allowed.

    Empty parameters (``;;``, RFC 4475 badinv01) and malformed names or values raise
    :class:`SipParseError`.
    """
    text = text.strip(_WS)
    if not text:
        return {}
    if text[0] == ";":
        text = text[1:]
    items = text.split(";") if '"' not in text else _split_quoted(text, ";")
    params: dict[str, str | None] = {}
    for item in items:
        eq = item.find("=")
        if eq < 0:
            name = item.strip(_WS)
            value: str | None = None
        else:
            name = item[:eq].strip(_WS)
            value = item[eq + 1 :].strip(_WS)
            if not (_GEN_VALUE_RE.match(value) or _is_quoted(value)):
                raise SipParseError(f"malformed parameter value: {item!r}")
        if not _TOKEN_RE.match(name):
            raise SipParseError(f"malformed parameter: {item!r}")
        params[name.lower()] = value
    return params


def format_params(params: Mapping[str, str | None]) -> str:
    """``;name=value;flag`` for every parameter, in order."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _is_quoted(value: str) -> bool:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return False
    _unquote(value, 0)  # raises on a stray quote inside
    return True


def _split_quoted(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside quoted strings (quoted-pair aware)."""
    items: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i = _quoted_end(text, i)
            continue
        if ch == sep:
            items.append(text[start:i])
            start = i + 1
        i += 1
    items.append(text[start:])
    return items


def _quoted_end(text: str, start: int) -> int:
    """Index just past the quoted-string that opens at ``start``."""
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    raise SipParseError(f"unterminated quoted string: {text!r}")


def _unquote(text: str, start: int) -> tuple[str, int]:
    """Decode the quoted-string at ``start``: (content, index past it). §25.1 quoted-pair."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n or text[i + 1] in "\r\n":
                raise SipParseError(f"bad quoted-pair in {text!r}")
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise SipParseError(f"unterminated quoted string: {text!r}")


def quote_string(text: str) -> str:
    """Serialize ``text`` as a quoted-string, escaping what qdtext cannot hold (§25.1).

    CR and LF cannot be escaped at all, so they become spaces (no header injection).
    """
    out = ['"']
    for ch in text:
        if ch in "\r\n":
            out.append(" ")
        elif ch in '"\\' or (ord(ch) < 0x20 and ch != "\t") or ch == "\x7f":
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Via (§20.42)


@dataclass(slots=True)
class Via:
    """One via-parm: ``SIP/2.0/UDP host:port;branch=...;received=...;rport``."""

    transport: str = "UDP"
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value a server filled in (RFC 3581 §4); None when absent or empty."""
        value = self.params.get("rport")
        return int(value) if value and value.isdigit() and value.isascii() else None

    @property
    def has_rport(self) -> bool:
        """The client asked for symmetric response routing (RFC 3581 §3)."""
        return "rport" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def sent_by(self) -> str:
        """``host[:port]`` with IPv6 brackets (§18.2.1 compares it with the source)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def with_param(self, name: str, value: str | None = None) -> Via:
        """A copy with ``name`` set (appended if new), e.g. received/rport (§18.2.1)."""
        params = dict(self.params)
        params[name.lower()] = value
        return replace(self, params=params)

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    """Parse one via-parm (§25.1); LWS around "/", ";" and "=" is allowed (RFC 4475 wsinv).

    A protocol other than SIP/2.0 raises :class:`VersionNotSupported`; anything malformed,
    including empty parameters (RFC 4475 badinv01), raises :class:`SipParseError`.
    """
    # Fast path for the canonical "SIP/2.0/UDP host..." form; anything else takes the LWS path.
    sp = value.find(" ", 8) if value.startswith("SIP/2.0/") else -1
    transport = value[8:sp] if sp > 8 else ""
    if _TOKEN_RE.match(transport):
        rest = value[sp + 1 :]
    else:
        transport, rest = _parse_sent_protocol(value)
    if not _TOKEN_RE.match(transport):
        raise SipParseError(f"malformed Via transport: {value!r}")
    semi = rest.find(";")
    sent_by = (rest if semi < 0 else rest[:semi]).strip(_WS)
    host, port = parse_hostport(_strip_port_lws(sent_by))
    params = {} if semi < 0 else parse_params(rest[semi:])
    return Via(transport.upper(), host, port, params)


def _parse_sent_protocol(value: str) -> tuple[str, str]:
    # sent-protocol = protocol-name SLASH protocol-version SLASH transport; SLASH = SWS "/" SWS
    parts = value.split("/", 2)
    if len(parts) != 3:
        raise SipParseError(f"malformed Via: {value!r}")
    name, version = parts[0].strip(_WS), parts[1].strip(_WS)
    tail = parts[2].lstrip(_WS)
    end = 0
    while end < len(tail) and tail[end] not in _WS:
        end += 1
    if end == len(tail):
        raise SipParseError(f"Via without sent-by: {value!r}")
    if name.upper() != "SIP":
        raise SipParseError(f"Via protocol is not SIP: {value!r}")
    if version != "2.0":
        raise VersionNotSupported(f"Via protocol version {version!r}")
    return tail[:end], tail[end:]


def _strip_port_lws(sent_by: str) -> str:
    # sent-by = host [ COLON port ] where COLON = SWS ":" SWS.
    if " " in sent_by or "\t" in sent_by:
        colon = sent_by.rfind(":")
        if colon < 0 or sent_by.endswith("]"):
            raise SipParseError(f"LWS inside Via sent-by: {sent_by!r}")
        return sent_by[:colon].rstrip(_WS) + ":" + sent_by[colon + 1 :].lstrip(_WS)
    return sent_by


# ---------------------------------------------------------------------------------------------
# name-addr / addr-spec (§20.10 Contact, §20.20 From, §20.39 To, Route, Record-Route)


@dataclass(slots=True)
class NameAddr:
    """``[display-name] <uri> *(;param)``. ``display`` is unquoted text, or None when absent."""

    display: str | None = None
    uri: SipUri = field(default_factory=SipUri)
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def expires(self) -> str | None:
        """A Contact's expires parameter as received (§20.10); validate before trusting it."""
        return self.params.get("expires")

    @property
    def q(self) -> str | None:
        return self.params.get("q")

    def with_param(self, name: str, value: str | None = None) -> NameAddr:
        """A copy with ``name`` set, e.g. adding the To tag (§8.2.6.2)."""
        params = dict(self.params)
        params[name.lower()] = value
        return replace(self, params=params)

    def __str__(self) -> str:
        display = "" if self.display is None else quote_string(self.display) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(value: str) -> NameAddr:
    """Parse From/To/Contact/Route values: name-addr or addr-spec, then header params.

    In the bare addr-spec form the URI ends at the first ";", so those parameters belong to the
    header, not the URI (§20.10, RFC 4475 cparam01); such a URI may not contain "?" (regbadct).
    URIs of unknown schemes are accepted (RFC 4475 unksm2) with their text in ``uri.opaque``.
    """
    s = value.strip(_WS)
    if not s:
        raise SipParseError("empty address")
    display: str | None = None
    if s[0] == '"':
        display, end = _unquote(s, 0)
        s = s[end:].lstrip(_WS)
        if not s.startswith("<"):
            raise SipParseError(f"quoted display name without <URI>: {value!r}")
    lt = s.find("<")
    if lt >= 0:
        if lt > 0:
            display = _token_display(s[:lt], value)
        gt = s.find(">", lt)
        if gt < 0:
            raise SipParseError(f"unterminated <URI>: {value!r}")
        uri_text = s[lt + 1 : gt]
        rest = s[gt + 1 :]
    else:
        semi = s.find(";")
        uri_text = (s if semi < 0 else s[:semi]).rstrip(_WS)
        rest = "" if semi < 0 else s[semi:]
        if "?" in uri_text or "," in uri_text:
            raise SipParseError(f"addr-spec with '?' or ',' must be in <>: {value!r}")
    if not uri_text or any(c in _WS for c in uri_text):
        raise SipParseError(f"malformed URI in address: {value!r}")
    uri = parse_uri(uri_text, any_scheme=True)
    params = parse_params(rest) if rest else {}
    if rest and rest.lstrip(_WS)[:1] != ";":
        raise SipParseError(f"junk after address: {value!r}")
    return NameAddr(display, uri, params)


def _token_display(text: str, value: str) -> str:
    # display-name = *(token LWS) / quoted-string (§25.1); tokens keep one space between them.
    words = text.split()
    if not words or not all(_TOKEN_RE.match(w) for w in words):
        raise SipParseError(f"malformed display name: {value!r}")
    return " ".join(words)


def parse_contacts(values: Iterable[str]) -> list[NameAddr] | None:
    """Parse the elements of Contact headers; ``None`` means the wildcard ``*`` (§10.2.2).

    ``*`` mixed with addresses is malformed (§10.3 step 6).
    """
    items = list(values)
    if any(v.strip(_WS) == "*" for v in items):
        if len(items) != 1:
            raise SipParseError("Contact '*' combined with other contacts")
        return None
    return [parse_name_addr(v) for v in items]
