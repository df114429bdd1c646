"""Building messages: identifiers and responses (RFC 3261 §8.1.1, §8.2.6, §17.1.1.3).

Randomness is injected (ARCHITECTURE.md convention 7): ``IdGenerator(rand=...)`` lets tests make
branches, tags and Call-IDs deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .message import Headers, Request, Response

#: §8.1.1.7: a branch that starts with this cookie says the sender follows RFC 3261 matching.
MAGIC_COOKIE = "z9hG4bK"

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    429: "Too Many Requests",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    """The RFC 3261 §21 reason phrase of ``status``, or a generic one for its class."""
    phrase = REASON_PHRASES.get(status)
    if phrase is not None:
        return phrase
    return {1: "Trying", 2: "OK", 3: "Redirect", 4: "Client Error", 5: "Server Error"}.get(
        status // 100, "Global Failure"
    )


class IdGenerator:
    """Makes branches, tags and Call-IDs from injected randomness (default ``os.urandom``)."""

    __slots__ = ("_rand",)

    def __init__(self, rand: Callable[[int], bytes] = os.urandom) -> None:
        self._rand = rand

    def token(self, nbytes: int = 8) -> str:
        return self._rand(nbytes).hex()

    def branch(self) -> str:
        """§8.1.1.7: unique over space and time, starting with the magic cookie."""
        return MAGIC_COOKIE + self._rand(10).hex()

    def tag(self) -> str:
        """§19.3: at least 32 bits of randomness."""
        return self._rand(6).hex()

    def call_id(self, host: str) -> str:
        """§8.1.1.4: globally unique; the host part is informational."""
        return f"{self._rand(12).hex()}@{host}"


# Headers copied from request to response (§8.2.6.2); Via keeps its order and all values.
_COPIED = ("via", "from", "to", "call-id", "cseq")


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Response:
    """A response to ``request`` per §8.2.6.2: Via, From, To, Call-ID and CSeq copied.

    ``to_tag`` is added to To when the request's To has none (a 100 Trying must not add one; the
    caller simply omits it then).
    """
    items: list[tuple[str, str, str]] = []
    for k, canon, v in request.headers._items:
        if k in _COPIED:
            if k == "to" and to_tag is not None and ";tag=" not in v.replace(" ", "").lower():
                v = f"{v};tag={to_tag}"
            items.append((k, canon, v))
    resp = Response(
        status=status,
        reason=reason if reason is not None else reason_phrase(status),
        headers=Headers._from_parsed(items),
        body=body,
    )
    if status == 100 and "timestamp" in (k for k, _, _ in request.headers._items):
        # §8.2.6.1: a 100 Trying echoes Timestamp.
        ts = request.headers.get("Timestamp")
        if ts is not None:
            resp.headers.add("Timestamp", ts)
    if headers:
        for name, value in headers:
            resp.headers.add(name, value)
    return resp
