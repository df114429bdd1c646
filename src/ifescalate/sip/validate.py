"""Message validation a UAS does before acting on a request (RFC 3261 §8.2, RFC 4475).

Two layers, kept apart so a caller can choose:

* ``validate_request`` / ``validate_response``: is the message well formed enough to act on?
  Mandatory headers (§8.1.1), single-valued headers appearing once, CSeq method matching the
  request method, scalar ranges, parseable From/To/Via/Contact, a Request-URI we understand.
  Failures raise :class:`SipParseError` (400), :class:`UnsupportedUriScheme` (416) or
  :class:`VersionNotSupported` (505). A response that fails is dropped, never answered.
* ``check_*``: application-layer decisions that depend on what this element supports
  (420 Require, 415 Content-Type, 406 Accept, 405/501 method, 483 Max-Forwards, 401 scheme,
  REGISTER rules, the UAC's one-Via rule). Each raises a :class:`ValidationError` whose
  ``response_headers`` are the headers the error response must carry (Unsupported, Accept, Allow).

RFC 2543 peers are tolerated (RFC 4475 inv2543): Max-Forwards may be absent, the From tag and the
Via branch are optional.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from .errors import SipError, SipParseError, UnsupportedUriScheme
from .headers import parse_contacts, parse_name_addr, parse_via
from .message import Headers, Request, Response, parse_cseq
from .uri import SipUri, parse_uri

__all__ = [
    "KNOWN_METHODS",
    "BadExtension",
    "MethodNotAllowed",
    "MethodNotImplemented",
    "NotAcceptable",
    "ResponseDiscarded",
    "TooManyHops",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationError",
    "check_accept",
    "check_authorization_scheme",
    "check_content",
    "check_max_forwards",
    "check_method",
    "check_register",
    "check_request_uri_scheme",
    "check_require",
    "check_response_vias",
    "validate_request",
    "validate_response",
]


class ValidationError(SipError):
    """An application-layer rejection; ``response_headers`` go into the error response."""

    def __init__(self, message: str, response_headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.response_headers: list[tuple[str, str]] = list(response_headers)


class Unauthorized(ValidationError):
    """§22.1 / RFC 4475 regaut01: credentials in a scheme we cannot check; challenge again."""

    status = 401
    reason = "Unauthorized"


class MethodNotAllowed(ValidationError):
    """§8.2.1: a method we recognise but do not accept here; the response carries Allow."""

    status = 405
    reason = "Method Not Allowed"


class NotAcceptable(ValidationError):
    """§21.4.7 / RFC 4475 sdp01: no body we could send is in the request's Accept."""

    status = 406
    reason = "Not Acceptable"


class UnsupportedMediaType(ValidationError):
    """§8.2.3 / RFC 4475 invut: a body type or encoding we do not understand; carries Accept."""

    status = 415
    reason = "Unsupported Media Type"


class BadExtension(ValidationError):
    """§8.2.2.3 / RFC 4475 bext01: Require names an extension we lack; carries Unsupported."""

    status = 420
    reason = "Bad Extension"


class TooManyHops(ValidationError):
    """§16.3 / RFC 4475 zeromf: Max-Forwards is 0 and the request would be forwarded."""

    status = 483
    reason = "Too Many Hops"


class MethodNotImplemented(ValidationError):
    """§21.5.2: a method this element does not recognise at all (RFC 4475 esc02)."""

    status = 501
    reason = "Not Implemented"


class ResponseDiscarded(ValidationError):
    """A response a UAC must silently drop (§8.1.3.3, RFC 4475 bcast). Never answered."""


#: Methods of RFC 3261 and its common extensions (PRACK 3262, SUBSCRIBE/NOTIFY 6665, UPDATE 3311,
#: MESSAGE 3428, REFER 3515, INFO 6086, PUBLISH 3903): a method outside it gets 501, not 405.
KNOWN_METHODS = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
        "UPDATE", "MESSAGE", "REFER", "INFO", "PUBLISH",
    }
)  # fmt: skip

# Headers that may appear at most once (§20: not defined as comma-separated lists). RFC 4475
# multi01 repeats To, From, Call-ID, CSeq and Max-Forwards and expects 400.
_SINGLE_VALUED = (
    "to", "from", "call-id", "cseq", "max-forwards", "content-length", "content-type",
    "expires", "min-expires", "date", "mime-version", "retry-after", "rseq", "rack",
)  # fmt: skip
_MANDATORY = ("To", "From", "Call-ID", "CSeq")

# callid = word [ "@" word ] (§25.1).
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALLID_RE = re.compile(rf"{_WORD}(?:@{_WORD})?\Z")
# SIP-date = rfc1123-date, and §20.17: the time zone MUST be "GMT" (RFC 4475 baddate).
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT\Z"
)
# warning-value = warn-code SP warn-agent SP warn-text; warn-code = 3DIGIT (RFC 4475 scalarlg).
_WARNING_RE = re.compile(r'\d{3} [^\s"]+ "(?:[^"\\]|\\.)*"\Z')
_MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+/[A-Za-z0-9\-.!%*_+`'~]+\s*(;.*)?\Z")
_TAG_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")  # token (§25.1), the common tag form
_DELTA_MAX = 2**32 - 1  # delta-seconds upper bound (§20.19, RFC 4475 scalar02)


# ---------------------------------------------------------------------------------------------
# Syntax-level validation


def validate_request(req: Request) -> None:
    """Reject a request no UAS should act on (§8.2.1-§8.2.2, RFC 4475 §3.1.2 and §3.3)."""
    _check_request_uri(req.uri)
    h = req.headers
    star = _check_common(h)
    _seq, method = parse_cseq(h.get("CSeq"))
    if method != req.method:
        # §8.1.1.5: the CSeq method MUST match the request (RFC 4475 mismatch01/02).
        raise SipParseError(f"CSeq method {method!r} does not match {req.method!r}")
    max_forwards = h.get("Max-Forwards")
    if max_forwards is not None:
        _max_forwards_value(max_forwards)
    if star and req.method != "REGISTER":
        raise SipParseError("Contact '*' outside REGISTER (§20.10)")


def validate_response(resp: Response) -> None:
    """Reject a response a UAC must drop (§8.1.3, RFC 4475 scalarlg); it is never answered."""
    _check_common(resp.headers)
    for value in resp.headers.get_lines("Retry-After"):
        # Retry-After = delta-seconds [ comment ] *( SEMI retry-param )  (§20.33)
        _delta_seconds(value.split(";", 1)[0].split("(", 1)[0].strip(), "Retry-After")


_SINGLE_SET = frozenset(_SINGLE_VALUED)
_MANDATORY_KEYS = tuple((name, name.lower()) for name in _MANDATORY)

# Header values already proven valid, so identical ones (the Request-URI, Contact and To of every
# INVITE from one peer) are not parsed again. Every check below is a pure function of the string,
# so a hit gives exactly the verdict a parse would; the set is cleared when full to stay bounded.
_VALID_CACHE_MAX = 4096
_valid_uris: set[str] = set()
_valid_name_addrs: set[str] = set()
_contact_cache: dict[tuple[str, ...], bool] = {}


def _remember(cache: set[str], value: str) -> None:
    if len(cache) >= _VALID_CACHE_MAX:
        cache.clear()
    cache.add(value)


def _check_request_uri(text: str) -> None:
    if text in _valid_uris:
        return
    uri = parse_uri(text)  # 416 for a scheme we do not speak (§8.2.2.1), 400 if malformed
    if uri.headers:
        # §19.1.1 table: headers are not allowed in a Request-URI (RFC 4475 escruri).
        raise SipParseError(f"Request-URI carries headers: {text!r}")
    _remember(_valid_uris, text)


_valid_vias: set[str] = set()


def _check_via(value: str) -> None:
    if value in _valid_vias:
        return
    # The branch is the per-transaction part of a Via (§8.1.1.7). A valid via-parm with one more
    # ";branch=TOKEN" parameter is itself valid, so the branch-less text is what gets cached
    # (quoted strings excluded: there ";branch=" could sit inside a quoted value).
    head, sep, rest = value.partition(";branch=")
    if sep and '"' not in value:
        branch, semi, tail = rest.partition(";")
        if _TAG_RE.match(branch):
            base = head + semi + tail
            if base in _valid_vias:
                return
            parse_via(value)  # the whole value's own error, if any
            try:
                parse_via(base)
            except SipError:
                return
            _remember(_valid_vias, base)
            return
    parse_via(value)
    _remember(_valid_vias, value)


def _check_name_addr(value: str) -> None:
    if value in _valid_name_addrs:
        return
    # From/To differ per call only by their tag (§19.3). A valid name-addr followed by one more
    # header parameter ";tag=TOKEN" is itself valid, so the tagless part is what gets cached.
    base, sep, tag = value.rpartition(";tag=")
    if sep and _TAG_RE.match(tag):
        if base in _valid_name_addrs:
            return
        parse_name_addr(value)  # the whole value's own error, if any
        try:
            parse_name_addr(base)
        except SipError:
            return
        _remember(_valid_name_addrs, base)
        return
    parse_name_addr(value)
    _remember(_valid_name_addrs, value)


def _check_contacts(values: list[str]) -> bool:
    """Validate Contact elements (§20.10); True when Contact is the wildcard ``*``."""
    key = tuple(values)
    known = _contact_cache.get(key)
    if known is not None:
        return known
    contacts = parse_contacts(values)
    for contact in contacts or ():
        if contact.expires is not None:
            _delta_seconds(contact.expires, "Contact expires")
    if len(_contact_cache) >= _VALID_CACHE_MAX:
        _contact_cache.clear()
    _contact_cache[key] = contacts is None
    return contacts is None


def _check_common(h: Headers) -> bool:
    """Checks shared by requests and responses; returns True when Contact is ``*``."""
    # One pass over the fields for presence and repetition (multi01), not one scan per name.
    # ``first``: each header's first value, so later checks need no further scans.
    first: dict[str, str] = {}
    for key, _canon, value in h._items:
        if key in first:
            if key in _SINGLE_SET:
                raise SipParseError(f"{key} header appears more than once")
        else:
            first[key] = value
    for name, key in _MANDATORY_KEYS:
        if key not in first:
            raise SipParseError(f"missing mandatory {name} header (§8.1.1)")
    vias = h.values("Via")
    if not vias:
        raise SipParseError("missing Via header (§8.1.1.7)")
    for via in vias:
        _check_via(via)
    call_id = first["call-id"]
    if not _CALLID_RE.match(call_id):
        raise SipParseError(f"malformed Call-ID: {call_id!r}")
    parse_cseq(first["cseq"])
    _check_name_addr(first["from"])
    _check_name_addr(first["to"])
    star = _check_contacts(h.values("Contact")) if "contact" in first else False
    _check_scalars(h, first)
    return star


def _check_scalars(h: Headers, first: dict[str, str]) -> None:
    expires = first.get("expires")
    if expires is not None:
        _delta_seconds(expires, "Expires")
    date = first.get("date")
    if date is not None and not _DATE_RE.match(date):
        raise SipParseError(f"malformed Date (RFC 1123, GMT only, §20.17): {date!r}")
    if "warning" in first:
        for warning in h.values("Warning"):
            if not _WARNING_RE.match(warning):
                raise SipParseError(f"malformed Warning: {warning!r}")
    ctype = first.get("content-type")
    if ctype is not None and not _MEDIA_TYPE_RE.match(ctype):
        raise SipParseError(f"malformed Content-Type: {ctype!r}")


def _delta_seconds(value: str, what: str) -> int:
    if not value.isdigit() or not value.isascii():
        raise SipParseError(f"malformed {what}: {value!r}")
    # Length first: int() of a huge digit string is slow and pointless.
    if len(value) > 10 or int(value) > _DELTA_MAX:
        raise SipParseError(f"{what} out of range: {value}")
    return int(value)


def _max_forwards_value(value: str) -> int:
    # Max-Forwards = 1*DIGIT, 0-255 (§20.22; RFC 4475 scalar02: 300 is out of range).
    if not value.isdigit() or not value.isascii() or len(value) > 4 or int(value) > 255:
        raise SipParseError(f"malformed Max-Forwards: {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# Application-layer checks


def check_max_forwards(req: Request) -> None:
    """Before forwarding (§16.3 step 3): Max-Forwards 0 gets 483 (RFC 4475 zeromf).

    A UAS that processes the request itself must not call this: RFC 4475 says an endpoint
    handles a zero Max-Forwards as if it were still positive.
    """
    value = req.headers.get("Max-Forwards")
    if value is not None and _max_forwards_value(value) == 0:
        raise TooManyHops("Max-Forwards is 0")


def check_require(req: Request, supported: Collection[str]) -> None:
    """§8.2.2.3: 420 listing every Require option-tag not in ``supported`` (RFC 4475 bext01).

    Proxy-Require is for proxies and is ignored here; ACK and CANCEL are never rejected for it.
    """
    if req.method in ("ACK", "CANCEL"):
        return
    known = {s.lower() for s in supported}
    missing = [tag for tag in req.headers.values("Require") if tag.lower() not in known]
    if missing:
        raise BadExtension(
            f"unsupported extensions: {', '.join(missing)}",
            [("Unsupported", ", ".join(missing))],
        )


def check_content(
    req: Request,
    accept: Collection[str] = ("application/sdp",),
    encodings: Collection[str] = ("identity",),
) -> None:
    """§8.2.3: a body of a type or encoding we cannot read gets 415 (RFC 4475 invut).

    The response lists what we take in Accept / Accept-Encoding.
    """
    if not req.body:
        return
    ctype = req.headers.get("Content-Type")
    media = (ctype or "").split(";", 1)[0].strip().lower()
    if media not in {a.lower() for a in accept}:
        raise UnsupportedMediaType(
            f"unsupported Content-Type: {ctype!r}", [("Accept", ", ".join(accept))]
        )
    allowed_enc = {e.lower() for e in encodings}
    for enc in req.headers.values("Content-Encoding"):
        if enc.lower() not in allowed_enc:
            raise UnsupportedMediaType(
                f"unsupported Content-Encoding: {enc!r}",
                [("Accept-Encoding", ", ".join(encodings))],
            )


def check_accept(req: Request, produces: Collection[str]) -> None:
    """406 when the answer must carry a body and Accept allows none we produce (RFC 4475 sdp01).

    No Accept header means application/sdp (§20.1); an empty one means no body is acceptable.
    """
    if "Accept" not in req.headers:
        ranges = ["application/sdp"]
    else:
        ranges = [r.split(";", 1)[0].strip().lower() for r in req.headers.values("Accept")]
    for media in produces:
        mtype, _, _sub = media.lower().partition("/")
        if any(r in (media.lower(), f"{mtype}/*", "*/*") for r in ranges):
            return
    raise NotAcceptable(f"none of {list(produces)} in Accept {ranges}")


def check_method(req: Request, allowed: Collection[str]) -> None:
    """405 with Allow for a known method not offered here; 501 for an unknown one (§8.2.1)."""
    if req.method in allowed:
        return
    if req.method in KNOWN_METHODS:
        raise MethodNotAllowed(
            f"method {req.method} not allowed", [("Allow", ", ".join(sorted(allowed)))]
        )
    raise MethodNotImplemented(f"method {req.method!r} not implemented")


def check_request_uri_scheme(req: Request, schemes: Collection[str] = ("sip", "sips")) -> SipUri:
    """416 for a Request-URI scheme this element does not serve (§8.2.2.1); returns the URI."""
    uri = parse_uri(req.uri)
    if uri.scheme not in schemes:
        raise UnsupportedUriScheme(f"Request-URI scheme {uri.scheme!r} not served here")
    return uri


def check_authorization_scheme(req: Request, schemes: Collection[str] = ("digest",)) -> None:
    """401 (a fresh challenge) for credentials in an unknown scheme (RFC 4475 regaut01)."""
    known = {s.lower() for s in schemes}
    for name in ("Authorization", "Proxy-Authorization"):
        for value in req.headers.get_lines(name):
            scheme = value.strip().split(None, 1)[0].lower() if value.strip() else ""
            if scheme not in known:
                raise Unauthorized(f"unsupported {name} scheme {scheme!r}")


def check_register(req: Request) -> None:
    """Registrar rules of §10.3 that RFC 4475 exercises.

    The To header is the address-of-record and must be a SIP or SIPS URI (step 5, RFC 4475
    unksm2: 400); ``Contact: *`` needs ``Expires: 0`` and no other contact (step 6).
    """
    to = parse_name_addr(req.headers.get("To") or "")
    if not to.uri.is_sip:
        raise ValidationError(f"address-of-record is not a SIP URI: {to.uri}")
    contacts = req.headers.values("Contact")
    if contacts and parse_contacts(contacts) is None and req.headers.get("Expires") != "0":
        raise ValidationError("Contact '*' without Expires: 0")


def check_response_vias(resp: Response) -> None:
    """§8.1.3.3: a UAC discards a response with more than one Via (RFC 4475 bcast)."""
    if len(resp.headers.values("Via")) != 1:
        raise ResponseDiscarded("response must carry exactly one Via at the UAC")
