"""SIP, SIPS and tel URIs: parse, serialize, compare (RFC 3261 §19.1, §25.1; RFC 3966).

Escaping policy, chosen so that a URI survives a parse/serialize round trip and compares right:

* ``user`` and ``password`` are kept **as received** (still %-escaped). A user part is an opaque
  identifier that a proxy must forward unchanged; telephone-subscriber users have their own
  escaping rules. Use :func:`unescape` or :attr:`SipUri.user_unescaped` when you need the text.
* ``params`` and ``headers`` are stored **unescaped** (``;%6C%72`` is the ``lr`` parameter, RFC
  4475 esc01), so code can look up ``params["transport"]``. ``str(uri)`` escapes them again with
  the minimal set that §25.1 requires.
* Parameter names are lowercased; parameter values keep their case. Header names keep their case.
* The host keeps its case; IPv6 addresses are stored without brackets.

A ``tel`` URI keeps its number in ``user`` (host is ``""``). A URI of another scheme, which may
appear in To/From/Contact (RFC 4475 unksm2), is only accepted with ``any_scheme=True`` and keeps
its scheme-specific part in ``opaque``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from .errors import SipParseError, UnsupportedUriScheme

__all__ = [
    "SipUri",
    "escape",
    "parse_uri",
    "unescape",
    "uri_equal",
]

# §25.1 character classes (as regex character-set bodies, "%" admitted for escapes).
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER_RE = re.compile(rf"[{_UNRESERVED}&=+$,;?/%]+\Z")
_PASSWORD_RE = re.compile(rf"[{_UNRESERVED}&=+$,%]*\Z")
_PARAMCHARS_RE = re.compile(rf"[{_UNRESERVED}\[\]/:&+$%]+\Z")
_HVALUE_RE = re.compile(rf"[{_UNRESERVED}\[\]/?:+$%]*\Z")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9.])?\Z")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]+\Z")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
_TEL_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+\Z")
_OPAQUE_BAD = frozenset(' \t\r\n<>"')
_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")

# Characters that may appear unescaped when serializing each component (§25.1).
_SAFE_PARAM = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()[]/:&+$"
)
_SAFE_HVALUE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()[]/?:+$"
)

#: §19.1.4: these uri-parameters never match when present in only one URI. RFC 3261's own list is
#: user, ttl, method (and maddr); its examples also treat a lone transport as a mismatch.
_MUST_MATCH_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def unescape(text: str) -> str:
    """Decode %HH escapes (§19.1.2). Bytes that are not UTF-8 survive as surrogate escapes."""
    if "%" not in text:
        return text
    if _ESCAPE_RE.search(text):
        raise SipParseError(f"malformed %-escape in {text!r}")
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def escape(text: str, safe: frozenset[str] = _SAFE_PARAM) -> str:
    """%-escape every character of ``text`` outside ``safe`` (UTF-8 octets, §19.1.2)."""
    if all(c in safe for c in text):
        return text
    parts: list[str] = []
    for ch in text:
        if ch in safe:
            parts.append(ch)
        else:
            parts.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(parts)


@dataclass(slots=True)
class SipUri:
    """A parsed URI. See the module docstring for what is stored escaped and what is not."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    #: Scheme-specific part of a URI whose scheme is not sip, sips or tel.
    opaque: str | None = None

    @property
    def is_sip(self) -> bool:
        """True for sip: and sips: URIs (the ones that can be routed to, §19.1)."""
        return self.scheme in ("sip", "sips")

    @property
    def transport(self) -> str:
        """The transport to reach this URI: its transport param, "tls" for sips, else "udp"."""
        value = self.params.get("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def host_port(self) -> str:
        """``host[:port]`` with brackets around an IPv6 address (§19.1.1 hostport)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.scheme != "tel":
                if self.password is not None:
                    parts.append(":")
                    parts.append(self.password)
                parts.append("@")
        if self.scheme != "tel":
            parts.append(self.host_port)
        for name, value in self.params.items():
            parts.append(";")
            parts.append(escape(name))
            if value is not None:
                parts.append("=")
                parts.append(escape(value))
        if self.headers:
            parts.append("?")
            parts.append(
                "&".join(
                    f"{escape(k, _SAFE_HVALUE)}={escape(v, _SAFE_HVALUE)}"
                    for k, v in self.headers.items()
                )
            )
        return "".join(parts)


def parse_uri(text: str, *, any_scheme: bool = False) -> SipUri:
    """Parse a sip:, sips: or tel: URI (§25.1 SIP-URI / SIPS-URI, RFC 3966 telephone-uri).

    Raises :class:`UnsupportedUriScheme` (416, §8.2.2.1) for another well-formed scheme unless
    ``any_scheme`` is true, and :class:`SipParseError` for anything malformed, including LWS
    inside the URI (RFC 4475 badaspec, lwsruri).
    """
    colon = text.find(":")
    if colon <= 0:
        raise SipParseError(f"URI without scheme: {text!r}")
    scheme = text[:colon].lower()
    rest = text[colon + 1 :]
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(scheme, rest, text)
    if not _SCHEME_RE.match(scheme):
        raise SipParseError(f"malformed URI scheme: {text!r}")
    if scheme == "tel":
        return _parse_tel(rest, text)
    if not any_scheme:
        raise UnsupportedUriScheme(f"unsupported URI scheme {scheme!r}")
    if not rest or any(c in _OPAQUE_BAD for c in rest):
        raise SipParseError(f"malformed URI: {text!r}")
    return SipUri(scheme=scheme, opaque=rest)


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    # "@" appears only as the end of userinfo: user, password, params and headers cannot hold it.
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        pcolon = userinfo.find(":")
        if pcolon >= 0:
            user, password = userinfo[:pcolon], userinfo[pcolon + 1 :]
            if not _PASSWORD_RE.match(password):
                raise SipParseError(f"malformed password in URI: {text!r}")
        else:
            user = userinfo
        if not _USER_RE.match(user) or _ESCAPE_RE.search(user):
            raise SipParseError(f"malformed user part in URI: {text!r}")
    headers: dict[str, str] = {}
    qmark = rest.find("?")
    if qmark >= 0:
        headers = _parse_uri_headers(rest[qmark + 1 :], text)
        rest = rest[:qmark]
    params: dict[str, str | None] = {}
    semi = rest.find(";")
    if semi >= 0:
        params = _parse_uri_params(rest[semi + 1 :], text)
        rest = rest[:semi]
    host, port = parse_hostport(rest)
    return SipUri(scheme, user, password, host, port, params, headers)


def parse_hostport(text: str) -> tuple[str, int | None]:
    """``host [":" port]`` (§25.1 hostport); IPv6 references lose their brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference: {text!r}")
        host = text[1:end]
        if not _IPV6_RE.match(host):
            raise SipParseError(f"malformed IPv6 reference: {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SipParseError(f"malformed IPv6 reference: {text!r}") from None
        tail = text[end + 1 :]
    else:
        pcolon = text.find(":")
        host = text if pcolon < 0 else text[:pcolon]
        tail = "" if pcolon < 0 else text[pcolon:]
        if not _HOSTNAME_RE.match(host):
            raise SipParseError(f"malformed host: {text!r}")
    if not tail:
        return host, None
    if tail[0] != ":" or not tail[1:].isdigit() or not tail.isascii() or len(tail) > 6:
        raise SipParseError(f"malformed port: {text!r}")
    port = int(tail[1:])
    if port > 65535:
        raise SipParseError(f"port out of range: {text!r}")
    return host, port


def _parse_uri_params(text: str, uri: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        eq = item.find("=")
        name = item if eq < 0 else item[:eq]
        if not _PARAMCHARS_RE.match(name):
            raise SipParseError(f"malformed URI parameter {item!r} in {uri!r}")
        if eq < 0:
            params[unescape(name).lower()] = None
            continue
        value = item[eq + 1 :]
        if not _PARAMCHARS_RE.match(value):
            raise SipParseError(f"malformed URI parameter {item!r} in {uri!r}")
        params[unescape(name).lower()] = unescape(value)
    return params


def _parse_uri_headers(text: str, uri: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in text.split("&"):
        eq = item.find("=")
        if eq <= 0:
            raise SipParseError(f"malformed URI header {item!r} in {uri!r}")
        name, value = item[:eq], item[eq + 1 :]
        if not _HVALUE_RE.match(name) or not _HVALUE_RE.match(value):
            raise SipParseError(f"malformed URI header {item!r} in {uri!r}")
        headers[unescape(name)] = unescape(value)
    return headers


def _parse_tel(rest: str, text: str) -> SipUri:
    # RFC 3966: telephone-subscriber = number *par; the number stays in ``user`` as received.
    semi = rest.find(";")
    number = rest if semi < 0 else rest[:semi]
    if not _TEL_RE.match(number):
        raise SipParseError(f"malformed tel URI: {text!r}")
    params = {} if semi < 0 else _parse_uri_params(rest[semi + 1 :], text)
    return SipUri(scheme="tel", user=number, params=params)


def _tel_digits(number: str) -> str:
    # RFC 3966 §4: visual separators are not significant when comparing.
    return "".join(c for c in number if c not in "-.()").lower()


def _params_equal(a: dict[str, str | None], b: dict[str, str | None]) -> bool:
    for name, value in a.items():
        if name in b:
            other = b[name]
            if (value or "").lower() != (other or "").lower() or (value is None) != (other is None):
                return False
        elif name in _MUST_MATCH_PARAMS:
            return False
    return all(name in a for name in b if name in _MUST_MATCH_PARAMS)


def uri_equal(a: SipUri | str, b: SipUri | str) -> bool:
    """URI equivalence per RFC 3261 §19.1.4 (and RFC 3966 §4 for tel).

    Scheme, user and password compare case-sensitively after unescaping; the host
    case-insensitively; a component present in only one URI (port, user/ttl/method/maddr/transport
    param, any header) makes them differ; other params present in only one are ignored.
    """
    ua = a if isinstance(a, SipUri) else parse_uri(a, any_scheme=True)
    ub = b if isinstance(b, SipUri) else parse_uri(b, any_scheme=True)
    if ua.scheme != ub.scheme:
        return False
    if ua.opaque is not None or ub.opaque is not None:
        return ua.opaque == ub.opaque
    if ua.scheme == "tel":
        if _tel_digits(ua.user or "") != _tel_digits(ub.user or ""):
            return False
        return _params_equal(ua.params, ub.params) and set(ua.params) == set(ub.params)
    if _unescape_opt(ua.user) != _unescape_opt(ub.user):
        return False
    if _unescape_opt(ua.password) != _unescape_opt(ub.password):
        return False
    if ua.host.lower() != ub.host.lower() or ua.port != ub.port:
        return False
    if not _params_equal(ua.params, ub.params):
        return False
    ha = {k.lower(): v for k, v in ua.headers.items()}
    hb = {k.lower(): v for k, v in ub.headers.items()}
    return ha == hb


def _unescape_opt(text: str | None) -> str | None:
    return None if text is None else unescape(text)
