"""Seeds: the 49 RFC 4475 torture messages, a few valid messages, and what can be cut from them.

The torture corpus lives in ``shared/conformance/rfc4475`` beside the repository (CI clones the
repository next to a copy of ``shared/``); ``/work/shared`` is the fallback on a development
machine. A missing or incomplete corpus is an error, never a silently smaller seed set.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RFC4475_FILES = 49

# A few messages every parser must accept, so mutations start from deep, valid paths too.
VALID_MESSAGES: tuple[bytes, ...] = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:bob@biloxi.example.com>\r\n'
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com;transport=tcp>;expires=60\r\n"
    b"Supported: replaces, timer\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 162\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=sendrecv\r\n",
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bKnashds8;received=192.0.2.3\r\n"
    b"Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:bob@192.0.2.4>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n",
    b"REGISTER sips:registrar.biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS bobspc.biloxi.example.com:5061;branch=z9hG4bKnashds7\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sips:bob@biloxi.example.com>\r\n"
    b"From: Bob <sips:bob@biloxi.example.com>;tag=456248\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: <sips:bob@192.0.2.4>;expires=7200, <sip:bob@[2001:db8::10]:5070>;q=0.5\r\n"
    b'Authorization: Digest username="bob", realm="biloxi.example.com", '
    b'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="sips:registrar.biloxi.example.com", '
    b'response="245f23415f11432b3434341c022", algorithm=MD5, qop=auth, nc=00000001, '
    b'cnonce="0a4f113b", opaque="5ccc069c403ebaf9f0171e9517f40e41"\r\n'
    b"Expires: 7200\r\n"
    b"l: 0\r\n"
    b"\r\n",
    b"SIP/2.0 401 Unauthorized\r\n"
    b"v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n"
    b"f: <sip:a@example.com>;tag=1\r\n"
    b"t: <sip:b@example.com>;tag=2\r\n"
    b"i: x@y\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b'WWW-Authenticate: Digest realm="example.com", nonce="abc", algorithm=SHA-256, '
    b'qop="auth,auth-int", opaque="xyz", stale=FALSE\r\n'
    b'WWW-Authenticate: Digest realm="example.com", nonce="def", algorithm=MD5, qop="auth"\r\n'
    b"l: 0\r\n"
    b"\r\n",
)

VALID_SDP: tuple[bytes, ...] = (
    b"v=0\r\n"
    b"o=- 3724394400 3724394405 IN IP4 198.51.100.1\r\n"
    b"s=ifescalate\r\n"
    b"c=IN IP4 198.51.100.1\r\n"
    b"b=AS:64\r\n"
    b"t=0 0\r\n"
    b"a=sendrecv\r\n"
    b"m=audio 49170 RTP/SAVP 0 8 9 111 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:111 opus/48000/2\r\n"
    b"a=fmtp:111 useinbandfec=1\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=rtcp:49171 IN IP4 198.51.100.1\r\n"
    b"a=rtcp-mux\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
    b"inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n"
    b"a=recvonly\r\n",
    b"v=0\r\n"
    b"o=bob 2808844564 2808844564 IN IP6 2001:db8::2\r\n"
    b"s= \r\n"
    b"c=IN IP6 2001:db8::2\r\n"
    b"t=0 0\r\n"
    b"m=audio 0 RTP/AVP 0\r\n"
    b"m=video 51372 RTP/AVP 31\r\n"
    b"a=inactive\r\n",
)


def rfc4475_dir() -> Path:
    """The torture corpus directory; raises FileNotFoundError naming every place looked at."""
    tried: list[Path] = []
    env = os.environ.get("IFESCALATE_RFC4475_DIR")
    if env:
        tried.append(Path(env))
    tried.append(REPO_ROOT.parent / "shared" / "conformance" / "rfc4475")
    tried.append(Path("/work/shared/conformance/rfc4475"))
    for candidate in tried:
        if candidate.is_dir() and any(candidate.glob("*.dat")):
            return candidate
    raise FileNotFoundError(
        "RFC 4475 corpus not found; looked in " + ", ".join(str(p) for p in tried)
    )


def rfc4475_messages() -> dict[str, bytes]:
    """Every torture message by file stem; raises if the corpus is not all there."""
    directory = rfc4475_dir()
    found = {path.stem: path.read_bytes() for path in sorted(directory.glob("*.dat"))}
    if len(found) != RFC4475_FILES:
        raise FileNotFoundError(
            f"{directory}: expected {RFC4475_FILES} RFC 4475 .dat files, found {len(found)}"
        )
    return found


def message_seeds() -> list[bytes]:
    """The 49 torture messages and the valid messages, as whole datagrams."""
    return [*rfc4475_messages().values(), *VALID_MESSAGES]


def _head_lines(message: bytes) -> list[bytes]:
    head = message.split(b"\r\n\r\n", 1)[0]
    # Unfold (RFC 3261 §7.3.1) so a folded value is one seed, not a fragment.
    for fold in (b"\r\n ", b"\r\n\t"):
        head = head.replace(fold, b" ")
    return head.split(b"\r\n")


def header_values(messages: list[bytes], names: frozenset[bytes]) -> list[bytes]:
    """The values of the named headers (lowercase, long or compact) in every message, deduplicated."""
    out: dict[bytes, None] = {}
    for message in messages:
        for line in _head_lines(message)[1:]:
            name, sep, value = line.partition(b":")
            if sep and name.strip().lower() in names:
                out[value.strip()] = None
    return list(out)


def request_uris(messages: list[bytes]) -> list[bytes]:
    """The Request-URI of every message whose start line looks like a request."""
    out: dict[bytes, None] = {}
    for message in messages:
        parts = _head_lines(message)[0].split(b" ")
        if len(parts) == 3 and not parts[0].startswith(b"SIP/"):
            out[parts[1]] = None
    return list(out)


def bodies(messages: list[bytes]) -> list[bytes]:
    """The non-empty bodies (everything after the blank line) of the messages."""
    out: dict[bytes, None] = {}
    for message in messages:
        _, sep, body = message.partition(b"\r\n\r\n")
        if sep and body.strip():
            out[body] = None
    return list(out)
