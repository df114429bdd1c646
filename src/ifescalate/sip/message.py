"""SIP messages: parse and serialize requests and responses (RFC 3261 §7, §20, §25).

The parser is the hot path of every call, so it does the least work that makes a message safe to use:
it splits the start line and the header lines, unfolds continuation lines (§7.3.1), expands compact
header names (§7.3.3) and frames the body by Content-Length (§18.3, §20.14). Header values stay strings;
typed views (Via, CSeq, name-addr, URI) are parsed on demand by ``headers.py`` and ``uri.py``.

Semantic checks that RFC 4475 asks of an element (mandatory headers, CSeq method match, scalar
ranges) live in ``validate_request`` / ``validate_response`` so a proxy-like caller may choose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import (
    IncompleteMessage,
    MessageTooLarge,
    SipParseError,
    VersionNotSupported,
)

SIP_VERSION = "SIP/2.0"

#: Largest message we accept by default. RFC 3261 §18.1.1 has UDP messages well below a path MTU,
#: but TCP/TLS carry larger ones; 64 KiB bounds memory per message without refusing real traffic.
DEFAULT_MAX_MESSAGE_SIZE = 65535
#: A header flood (thousands of short lines) costs more than its byte size suggests.
DEFAULT_MAX_HEADERS = 256

# RFC 3261 §7.3.3 and the IANA registry's compact forms.
COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "r": "Refer-To",
    "b": "Referred-By",
    "o": "Event",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}

_CANONICAL_NAMES = [
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Organization",
    "Path",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "RAck",
    "Server",
    "Session-Expires",
    "Subject",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
    "Min-SE",
    "P-Asserted-Identity",
    "Privacy",
]
_CANONICAL: dict[str, str] = {n.lower(): n for n in _CANONICAL_NAMES}
for _short, _long in COMPACT_FORMS.items():
    _CANONICAL[_short] = _long

# Headers whose value is a single item that may itself contain commas (§7.3.1: these must not be
# split on commas). Authorization-family headers hold comma-separated auth-params of ONE credential.
_UNSPLITTABLE = frozenset(
    {
        "www-authenticate",
        "authorization",
        "proxy-authenticate",
        "proxy-authorization",
        "authentication-info",
        "date",
        "subject",
        "user-agent",
        "server",
        "call-id",
        "cseq",
        "content-length",
        "content-type",
        "max-forwards",
        "expires",
        "retry-after",
        "timestamp",
        "organization",
        "warning",
        "min-expires",
        "priority",
        "mime-version",
        "identity",
        "identity-info",
    }
)

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")  (§25.1)
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_FOLD_RE = re.compile(r"\r?\n[ \t]+")
# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§25.1): the code is exactly three
# digits followed by SP (RFC 4475 bigcode: "4294967301" must not parse as 429); a missing SP and
# empty reason is tolerated.
_STATUS_RE = re.compile(r"SIP/(\d+)\.(\d+) (\d{3})(?: (.*))?\Z", re.DOTALL)
# The blank line ending the header section, with CRLF or bare LF line ends (§7.5 robustness).
_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)\Z", re.IGNORECASE)
# What a Request-URI cannot contain unescaped (§25.1): angle brackets, quotes, SP, HTAB, controls.
_BAD_URI_CHAR_RE = re.compile(r'[<>"\x00-\x20]')


def canonical_name(name: str) -> str:
    """The registered spelling of a header name, expanding compact forms (§7.3.3)."""
    return _CANONICAL.get(name.lower(), name)


# Lookup keys by the spelling callers pass (``"Call-ID"``, ``"via"``): every header access goes
# through ``_key``, so the two ``lower()`` calls and the compact-form lookup are done once per
# spelling. Bounded: callers use a few dozen literal names; anything else is simply recomputed.
_KEYS: dict[str, str] = {}
_KEYS_MAX = 1024


def _key(name: str) -> str:
    key = _KEYS.get(name)
    if key is None:
        key = _CANONICAL.get(name.lower(), name).lower()
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[name] = key
    return key


def split_header_values(value: str) -> list[str]:
    """Split a header value on commas that are outside quoted strings and <...> (§7.3.1)."""
    if "," not in value:
        return [value.strip()]
    items: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            items.append(value[start:i].strip())
            start = i + 1
        i += 1
    if in_quote:
        raise SipParseError(f"unbalanced quote in header value: {value!r}")
    items.append(value[start:].strip())
    return [item for item in items if item]


class Headers:
    """An ordered multimap of header fields with case-insensitive names.

    Order matters in SIP (Via, Route, Record-Route are ordered lists), so fields are kept as a list of
    ``(lowercase name, name, value)``; lookups scan it, which beats a dict for the ~10 fields of a
    typical message.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_parsed(cls, items: list[tuple[str, str, str]]) -> Headers:
        obj = cls.__new__(cls)
        obj._items = items
        return obj

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first field named ``name`` (a whole line, not split on commas)."""
        key = _key(name)
        for k, _, v in self._items:
            if k == key:
                return v
        return default

    def get_lines(self, name: str) -> list[str]:
        """Every field value named ``name``, one per header line, in order."""
        key = _key(name)
        return [v for k, _, v in self._items if k == key]

    def values(self, name: str) -> list[str]:
        """Every element of a comma-separated list header (Via, Route, Contact, ...), in order."""
        key = _key(name)
        out: list[str] = []
        for k, _, v in self._items:
            if k == key:
                if key in _UNSPLITTABLE:
                    out.append(v)
                else:
                    out.extend(split_header_values(v))
        return out

    def first(self, name: str) -> str | None:
        """The first element of a list header: the top Via, the first Route."""
        key = _key(name)
        for k, _, v in self._items:
            if k == key:
                if key in _UNSPLITTABLE or "," not in v:
                    return v
                parts = split_header_values(v)
                return parts[0] if parts else None
        return None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(k == key for k, _, _ in self._items)

    def add(self, name: str, value: str) -> None:
        """Append a field after every existing one."""
        canon = _CANONICAL.get(name.lower(), name)
        self._items.append((canon.lower(), canon, value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before the first field of the same name (a new top Via, §16.6 step 8)."""
        canon = _CANONICAL.get(name.lower(), name)
        key = canon.lower()
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                self._items.insert(i, (key, canon, value))
                return
        self._items.insert(0, (key, canon, value))

    def set(self, name: str, value: str) -> None:
        """Replace every field named ``name`` by one field, at the place of the first."""
        canon = _CANONICAL.get(name.lower(), name)
        key = canon.lower()
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                self._items[i] = (key, canon, value)
                self._items[i + 1 :] = [it for it in self._items[i + 1 :] if it[0] != key]
                return
        self._items.append((key, canon, value))

    def remove(self, name: str) -> int:
        """Delete every field named ``name``; return how many were deleted."""
        key = _key(name)
        before = len(self._items)
        self._items = [it for it in self._items if it[0] != key]
        return before - len(self._items)

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first element of a list header (the top Via of a response, §18.1.2)."""
        key = _key(name)
        for i, (k, canon, v) in enumerate(self._items):
            if k == key:
                parts = split_header_values(v) if key not in _UNSPLITTABLE else [v]
                if len(parts) <= 1:
                    del self._items[i]
                else:
                    self._items[i] = (k, canon, ", ".join(parts[1:]))
                return parts[0] if parts else None
        return None

    def items(self) -> list[tuple[str, str]]:
        """``(name, value)`` pairs in wire order."""
        return [(canon, v) for _, canon, v in self._items]

    def copy(self) -> Headers:
        return Headers._from_parsed(list(self._items))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self.items() == other.items()

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


@dataclass(slots=True, eq=False)
class _Message:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    # Frequently used header views; every one is a plain lookup, nothing cached, nothing mutated.
    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method) of the CSeq header (§20.16); raises SipParseError if bad."""
        return parse_cseq(self.headers.get("CSeq"))

    @property
    def top_via(self) -> str | None:
        return self.headers.first("Via")

    def _start_line(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize with CRLF line ends and a Content-Length that matches the body (§20.14)."""
        parts = [self._start_line()]
        for k, canon, v in self.headers._items:
            if k != "content-length":
                parts.append(f"{canon}: {v}")
        parts.append(f"Content-Length: {len(self.body)}")
        parts.append("")
        parts.append("")
        return "\r\n".join(parts).encode("utf-8") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


@dataclass(slots=True, eq=False)
class Request(_Message):
    """A SIP request. ``uri`` is the Request-URI as text; parse it with ``uri.parse_uri``."""

    method: str = ""
    uri: str = ""

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id!r}>"


@dataclass(slots=True, eq=False)
class Response(_Message):
    """A SIP response."""

    status: int = 0
    reason: str = ""

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.call_id!r}>"


Message = Request | Response


# Valid CSeq values seen recently ("1 INVITE", "2 BYE" repeat across calls): parse_cseq is a pure
# function of the string and runs several times per message. Cleared when full to stay bounded.
_CSEQS: dict[str, tuple[int, str]] = {}
_CSEQS_MAX = 4096


def parse_cseq(value: str | None) -> tuple[int, str]:
    """CSeq = 1*DIGIT LWS Method (§20.16); the number is below 2**31 (§8.1.1.5)."""
    if value is None:
        raise SipParseError("missing CSeq header")
    known = _CSEQS.get(value)
    if known is not None:
        return known
    known = _parse_cseq(value)
    if len(_CSEQS) >= _CSEQS_MAX:
        _CSEQS.clear()
    _CSEQS[value] = known
    return known


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not parts[0].isascii():
        raise SipParseError(f"malformed CSeq: {value!r}")
    # Length first: int() refuses digit strings over 4300 digits with ValueError (CPython's
    # int_max_str_digits), and any number over 10 digits is out of range anyway (fuzz finding).
    seq = int(parts[0]) if len(parts[0]) <= 10 else 2**31
    if seq >= 2**31:
        raise SipParseError(f"CSeq number out of range: {parts[0][:20]}")
    if not _TOKEN_RE.match(parts[1]):
        raise SipParseError(f"malformed CSeq method: {parts[1]!r}")
    return seq, parts[1]


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Split at the empty line that ends the headers; tolerate bare LF line ends (§7.5 robustness)."""
    idx = data.find(b"\r\n\r\n")
    # The common all-CRLF message: no bare-LF blank line can come earlier in its head.
    if idx >= 0 and data.find(b"\n\n", 0, idx) < 0 and data.find(b"\n\r\n", 0, idx) < 0:
        return data[:idx], data[idx + 4 :]
    m = _BLANK_LINE_RE.search(data)
    if m is not None:
        return data[: m.start()], data[m.end() :]
    # A message with no body and no final blank line: treat the whole datagram as head (§18.3
    # requires the blank line, but a datagram boundary is unambiguous).
    return data.rstrip(b"\r\n"), b""


def _parse_start_line(line: str) -> Request | Response:
    if line.startswith("SIP/"):
        m = _STATUS_RE.match(line)
        if m is None:
            raise SipParseError(f"malformed status line: {line!r}")
        if (m.group(1), m.group(2)) != ("2", "0"):
            raise VersionNotSupported(f"unsupported SIP version in status line: {line!r}")
        reason = m.group(4) or ""
        if "\r" in reason or "\n" in reason:
            raise SipParseError("line break in reason phrase")
        status = int(m.group(3))
        if not 100 <= status <= 699:
            raise SipParseError(f"status code out of range: {status}")
        return Response(status=status, reason=reason)
    # Request-Line = Method SP Request-URI SP SIP-Version CRLF (§25.1): exactly single spaces.
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"malformed request line: {line!r}")
    method, uri, version = parts
    if not _TOKEN_RE.match(method):
        raise SipParseError(f"malformed method: {method!r}")
    if not uri or _BAD_URI_CHAR_RE.search(uri):
        raise SipParseError(f"malformed Request-URI: {uri!r}")
    vm = _VERSION_RE.match(version)
    if vm is None:
        raise SipParseError(f"malformed SIP version: {version!r}")
    if (vm.group(1), vm.group(2)) != ("2", "0"):
        raise VersionNotSupported(f"unsupported SIP version: {version}")
    return Request(method=method, uri=uri, version=SIP_VERSION)


# Header names as they appear on the wire (``"Via"``, ``"v"``, ``"CSeq "``) -> (lookup key, canonical
# spelling), for names that passed the token check. Peers repeat the same few dozen spellings, so
# the regex, ``lower()`` and compact-form expansion run once per spelling. Bounded: once full, new
# spellings are checked every time but not remembered.
_NAMES: dict[str, tuple[str, str]] = {}
_NAMES_MAX = 1024


def _header_name(raw: str) -> tuple[str, str]:
    """(lookup key, canonical name) of a raw header name (text before the colon)."""
    name = raw.rstrip(" \t")
    if not _TOKEN_RE.match(name):
        raise SipParseError(f"malformed header name: {name!r}")
    canon = _CANONICAL.get(name.lower())
    known = (name.lower(), name) if canon is None else (canon.lower(), canon)
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[raw] = known
    return known


def parse_head(
    head: bytes, *, max_headers: int = DEFAULT_MAX_HEADERS
) -> tuple[Request | Response, int | None]:
    """Parse start line and headers; return the message (empty body) and its Content-Length."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header section is not UTF-8: {exc}") from None
    # Leading CRLFs before a message are allowed and ignored on streams (§7.5).
    text = text.lstrip("\r\n")
    if "\n " in text or "\n\t" in text:
        text = _FOLD_RE.sub(" ", text)
    if text.count("\n") == text.count("\r\n"):
        lines = text.split("\r\n")  # every line ends in CRLF: the usual case, split once
    else:
        # Bare LF line ends (§7.5 robustness): drop one CR before each LF, as CRLF splitting does.
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    first = lines[0].rstrip("\r")
    msg = _parse_start_line(first)
    if len(lines) - 1 > max_headers:
        raise MessageTooLarge(f"too many header lines: {len(lines) - 1} > {max_headers}")
    items: list[tuple[str, str, str]] = []
    content_length: int | None = None
    names = _NAMES
    for line in lines[1:]:
        colon = line.find(":")
        if colon <= 0:
            raise SipParseError(f"malformed header line: {line!r}")
        name = line[:colon]
        known = names.get(name)
        if known is None:
            known = _header_name(name)
        lower, canon = known
        value = line[colon + 1 :].strip(" \t")
        if lower == "content-length":
            if not value.isdigit() or not value.isascii() or len(value) > 9:
                raise SipParseError(f"malformed Content-Length: {value!r}")
            cl = int(value)
            if content_length is not None and cl != content_length:
                raise SipParseError("conflicting Content-Length headers")
            content_length = cl
        items.append((lower, canon, value))
    msg.headers = Headers._from_parsed(items)
    return msg, content_length


def parse_message(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_headers: int = DEFAULT_MAX_HEADERS,
) -> Request | Response:
    """Parse one whole message from a datagram (§18.3).

    Content-Length, when present, frames the body and anything after it is ignored (RFC 4475
    dblreq); a datagram shorter than Content-Length is an error (§18.3). Without Content-Length the
    body is the rest of the datagram.
    """
    if len(data) > max_size:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds {max_size}")
    if data[:1] in (b"\r", b"\n"):
        # CRLF keep-alives before a message are ignored (§7.5, RFC 5626 §3.5.1).
        data = data.lstrip(b"\r\n")
    head, rest = _split_head(data)
    msg, content_length = parse_head(head, max_headers=max_headers)
    if content_length is None:
        msg.body = rest
    elif content_length > len(rest):
        raise IncompleteMessage(
            f"Content-Length {content_length} exceeds the {len(rest)} body bytes received"
        )
    else:
        msg.body = rest[:content_length]
    return msg


def parse_request(data: bytes) -> Request:
    msg = parse_message(data)
    if not isinstance(msg, Request):
        raise SipParseError("expected a request, got a response")
    return msg


def parse_response(data: bytes) -> Response:
    msg = parse_message(data)
    if not isinstance(msg, Response):
        raise SipParseError("expected a response, got a request")
    return msg
