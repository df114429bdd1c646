"""SIP errors that carry their own wire reply (ARCHITECTURE.md convention 5).

A core that catches one of these can answer with ``exc.status`` and ``exc.reason`` without knowing
what went wrong in detail; ``str(exc)`` says exactly what was wrong for logs and tests.
"""

from __future__ import annotations


class SipError(Exception):
    """Base of every error the SIP core raises on bad input. Invariant of the fuzz target."""

    status: int = 400
    reason: str = "Bad Request"


class SipParseError(SipError):
    """The bytes are not a well-formed SIP message (RFC 3261 §25)."""


class VersionNotSupported(SipParseError):
    """RFC 3261 §8.2.2 does not cover it, but §21.5.20: a version we do not speak gets 505."""

    status = 505
    reason = "Version Not Supported"


class MessageTooLarge(SipParseError):
    """RFC 3261 §21.4.28: 513 when the message is larger than we accept."""

    status = 513
    reason = "Message Too Large"


class IncompleteMessage(SipParseError):
    """The datagram or stream holds less body than Content-Length promises (§18.3)."""


class UnsupportedUriScheme(SipError):
    """RFC 3261 §8.2.2.1: a Request-URI scheme we do not understand gets 416."""

    status = 416
    reason = "Unsupported URI Scheme"
