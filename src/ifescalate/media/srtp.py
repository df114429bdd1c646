"""SRTP with SDES keying (RFC 4568 security descriptions, RFC 3711 SRTP) over pylibsrtp.

The SDP side: parse and format the ``a=crypto`` attribute value (RFC 4568 §4 / §9.2 grammar)::

    a=crypto:<tag> <crypto-suite> inline:<base64(key||salt)>[|<lifetime>][|<MKI>:<length>] *(<session-param>)

for the two suites of RFC 4568 §6.2 we support (AES_CM_128_HMAC_SHA1_80 and _32), generate our key
from injected randomness, and choose the answer's line from an offer (§7.1.2). The media side:
:class:`SrtpSession` protects or unprotects RTP and RTCP for one direction, raising
:class:`SrtpAuthError` / :class:`SrtpReplayError` (both :class:`~ifescalate.media.frames.MediaError`)
so the caller can drop and count the packet.

libsrtp as exposed by pylibsrtp has no MKI support, so an MKI signalled in a crypto line is handled
here: RFC 3711 §3.1 puts the MKI between the (S)RTP(C)P payload and the authentication tag and
leaves it out of the authenticated portion, so it can be inserted after protection and checked and
stripped before unprotection without touching the cryptography.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pylibsrtp

from ifescalate.media.frames import MediaError

__all__ = [
    "CryptoAttribute",
    "CryptoParseError",
    "Direction",
    "KeyParams",
    "NoAcceptableCrypto",
    "SrtpAuthError",
    "SrtpChannel",
    "SrtpError",
    "SrtpReplayError",
    "SrtpSession",
    "SrtpSuite",
    "accept_answer",
    "answer_crypto",
    "make_crypto",
]

Rand = Callable[[int], bytes]


class SrtpError(MediaError):
    """An SRTP/SRTCP packet could not be protected or unprotected."""


class SrtpAuthError(SrtpError):
    """RFC 3711 §3.3 step 5: the authentication tag did not verify (tampered, or wrong key)."""


class SrtpReplayError(SrtpError):
    """RFC 3711 §3.3.2: the packet index was already seen or is older than the replay window."""


class CryptoParseError(SrtpError):
    """An ``a=crypto`` attribute value does not follow the RFC 4568 §9.2 grammar."""


class NoAcceptableCrypto(SrtpError):
    """RFC 4568 §7.1.2: no offered crypto line is acceptable; the answerer rejects the stream."""


class SrtpSuite(enum.Enum):
    """The crypto-suites of RFC 4568 §6.2 that we implement (both AES-128 counter mode)."""

    AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
    AES_CM_128_HMAC_SHA1_32 = "AES_CM_128_HMAC_SHA1_32"

    @property
    def key_length(self) -> int:
        """Master key length in bytes (128 bits, §6.2.1)."""
        return 16

    @property
    def salt_length(self) -> int:
        """Master salt length in bytes (112 bits, §6.2.1)."""
        return 14

    @property
    def key_salt_length(self) -> int:
        """Length of the concatenated key||salt carried in ``inline:``."""
        return self.key_length + self.salt_length

    @property
    def rtp_tag_length(self) -> int:
        """SRTP authentication tag length in bytes: 80 or 32 bits (§6.2.1)."""
        return 10 if self is SrtpSuite.AES_CM_128_HMAC_SHA1_80 else 4

    @property
    def rtcp_tag_length(self) -> int:
        """SRTCP always uses an 80-bit tag, even with the _32 suite (RFC 4568 §6.2.1)."""
        return 10

    @property
    def profile(self) -> int:
        """The libsrtp profile constant."""
        if self is SrtpSuite.AES_CM_128_HMAC_SHA1_80:
            return int(pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
        return int(pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32)

    @classmethod
    def lookup(cls, name: str) -> SrtpSuite | None:
        """The suite called ``name`` or None when we do not implement it."""
        try:
            return cls(name)
        except ValueError:
            return None


class Direction(enum.Enum):
    """Which way an :class:`SrtpSession` works: protect our packets or unprotect theirs."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"


# RFC 4568 §9.2: lifetime = ["2^"] 1*(DIGIT); mki = mki-value ":" mki-length, mki-length 1..128.
_LIFETIME = re.compile(r"(2\^)?([0-9]{1,20})")
_MKI = re.compile(r"([0-9]{1,39}):([0-9]{1,3})")
_TAG = re.compile(r"[0-9]{1,9}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# Session parameters (§6.3) that change the cryptographic transform in ways libsrtp cannot follow
# through pylibsrtp: a line that carries one of them cannot be accepted (§7.1.2).
_UNSUPPORTED_SESSION_PARAMS = ("UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP")


@dataclass(frozen=True, slots=True)
class KeyParams:
    """One ``inline:`` key parameter (RFC 4568 §6.1).

    ``lifetime`` is the master key lifetime in packets (``None`` when absent: the suite default of
    2^48 / 2^31 applies, §6.2.1); ``mki`` is ``(value, length_in_bytes)`` or ``None``.
    """

    key_salt: bytes
    lifetime: int | None = None
    mki: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.mki is not None:
            value, length = self.mki
            if not 1 <= length <= 128:
                raise CryptoParseError(f"MKI length {length} outside 1..128 (RFC 4568 §6.1)")
            if value >= 1 << (8 * length):
                raise CryptoParseError(f"MKI value {value} does not fit in {length} bytes")
        if self.lifetime is not None and self.lifetime <= 0:
            raise CryptoParseError(f"key lifetime {self.lifetime} must be positive")

    @property
    def mki_bytes(self) -> bytes:
        """The MKI as it appears in each packet (big-endian, ``length`` bytes), or b''."""
        if self.mki is None:
            return b""
        value, length = self.mki
        return value.to_bytes(length, "big")

    @classmethod
    def parse(cls, text: str) -> KeyParams:
        """Parse ``inline:<key||salt>[|lifetime][|mki:len]`` (§9.2)."""
        method, sep, info = text.partition(":")
        if not sep or method.lower() != "inline":
            raise CryptoParseError(f"key method must be 'inline', got {text!r}")
        parts = info.split("|")
        if len(parts) > 3:
            raise CryptoParseError(f"too many '|' fields in key info {info!r}")
        key_salt = _decode_key(parts[0])
        lifetime: int | None = None
        mki: tuple[int, int] | None = None
        for field in parts[1:]:
            if ":" in field:
                if mki is not None:
                    raise CryptoParseError(f"two MKI fields in {info!r}")
                mki = _parse_mki(field)
            elif lifetime is None and mki is None:
                lifetime = _parse_lifetime(field)
            else:
                raise CryptoParseError(f"lifetime must come before the MKI in {info!r}")
        return cls(key_salt, lifetime, mki)

    def __str__(self) -> str:
        text = "inline:" + base64.b64encode(self.key_salt).decode("ascii")
        if self.lifetime is not None:
            text += "|" + _format_lifetime(self.lifetime)
        if self.mki is not None:
            text += f"|{self.mki[0]}:{self.mki[1]}"
        return text


def _decode_key(text: str) -> bytes:
    if not _BASE64.fullmatch(text):
        raise CryptoParseError(f"key-salt {text!r} is not base64")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise CryptoParseError(f"key-salt {text!r} is not valid base64: {exc}") from None


def _parse_lifetime(text: str) -> int:
    match = _LIFETIME.fullmatch(text)
    if match is None:
        raise CryptoParseError(f"bad key lifetime {text!r} (expected N or 2^N)")
    number = int(match.group(2))
    if match.group(1):
        # 2^N with N past 2^48's exponent is meaningless for SRTP (§6.2.1 caps at 2^48 / 2^31).
        if number > 64:
            raise CryptoParseError(f"key lifetime 2^{number} is too large")
        return 1 << number
    return number


def _format_lifetime(lifetime: int) -> str:
    # Powers of two are written as 2^N, as every example in RFC 4568 does.
    if lifetime & (lifetime - 1) == 0:
        return f"2^{lifetime.bit_length() - 1}"
    return str(lifetime)


def _parse_mki(text: str) -> tuple[int, int]:
    match = _MKI.fullmatch(text)
    if match is None:
        raise CryptoParseError(f"bad MKI {text!r} (expected value:length)")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """The value of one ``a=crypto`` attribute (RFC 4568 §4).

    ``suite`` stays a string so lines with suites we do not implement still parse (and are skipped
    when answering, §7.1.2); :attr:`srtp_suite` resolves it.
    """

    tag: int
    suite: str
    key_params: tuple[KeyParams, ...]
    session_params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.tag <= 999_999_999:
            raise CryptoParseError(f"crypto tag {self.tag} must be 1*9DIGIT (§9.2)")
        if not self.key_params:
            raise CryptoParseError("a crypto line needs at least one key parameter")
        suite = self.srtp_suite
        if suite is not None:
            for key in self.key_params:
                if len(key.key_salt) != suite.key_salt_length:
                    raise CryptoParseError(
                        f"{suite.value} needs {suite.key_salt_length} bytes of key||salt, "
                        f"got {len(key.key_salt)}"
                    )

    @property
    def srtp_suite(self) -> SrtpSuite | None:
        """The implemented suite, or None for a suite we do not know."""
        return SrtpSuite.lookup(self.suite)

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        """Parse an attribute value; an ``a=crypto:`` / ``crypto:`` prefix is accepted and ignored."""
        text = value.strip()
        for prefix in ("a=crypto:", "crypto:"):
            if text.lower().startswith(prefix):
                text = text[len(prefix) :]
                break
        fields = text.split()
        if len(fields) < 3:
            raise CryptoParseError(f"crypto attribute needs tag, suite and key params: {value!r}")
        if not _TAG.fullmatch(fields[0]):
            raise CryptoParseError(f"bad crypto tag {fields[0]!r}")
        # §9.2: key-params = key-param *(";" key-param); several keys are allowed (§5.1).
        keys = tuple(KeyParams.parse(part) for part in fields[2].split(";"))
        return cls(int(fields[0]), fields[1], keys, tuple(fields[3:]))

    def __str__(self) -> str:
        keys = ";".join(str(key) for key in self.key_params)
        return " ".join((str(self.tag), self.suite, keys, *self.session_params))

    @property
    def line(self) -> str:
        """The full SDP line, ``a=crypto:...``."""
        return f"a=crypto:{self}"


def make_crypto(tag: int, suite: SrtpSuite, rand: Rand) -> CryptoAttribute:
    """A fresh crypto line with a key||salt of ``rand(30)`` (RFC 4568 §6.1: a random master key)."""
    key_salt = rand(suite.key_salt_length)
    if len(key_salt) != suite.key_salt_length:
        raise SrtpError(f"randomness source returned {len(key_salt)} bytes")
    return CryptoAttribute(tag, suite.value, (KeyParams(key_salt),))


def _acceptable(offer: CryptoAttribute) -> bool:
    if offer.srtp_suite is None or len(offer.key_params) != 1:
        # Several master keys are told apart by MKI per packet; we hold one key per direction.
        return False
    for param in offer.session_params:
        name = param.split("=", 1)[0].upper()
        if name in _UNSUPPORTED_SESSION_PARAMS or name.startswith("FEC_KEY"):
            return False
        if name == "KDR" and param.split("=", 1)[-1] != "0":
            # A key derivation rate other than 0 (derive once) is not exposed by pylibsrtp.
            return False
    return True


def answer_crypto(
    offers: Iterable[CryptoAttribute | str], rand: Rand
) -> tuple[CryptoAttribute, CryptoAttribute]:
    """RFC 4568 §7.1.2: pick the first acceptable offered line and build our answer to it.

    Returns ``(chosen_offer, answer)``: the offer's key protects what we receive, the answer (same
    tag and suite, our own fresh key, no lifetime or MKI) protects what we send. Raises
    :class:`NoAcceptableCrypto` when nothing is acceptable (the stream must then be rejected).
    """
    seen: list[str] = []
    for item in offers:
        offer = CryptoAttribute.parse(item) if isinstance(item, str) else item
        suite = offer.srtp_suite
        if suite is not None and _acceptable(offer):
            return offer, make_crypto(offer.tag, suite, rand)
        seen.append(f"{offer.tag} {offer.suite}")
    raise NoAcceptableCrypto(f"no acceptable crypto line among {seen or 'none'}")


def accept_answer(
    offered: Sequence[CryptoAttribute], answer: CryptoAttribute | str
) -> CryptoAttribute:
    """Offerer side of §7.1.3: match the answer to our offered line by tag and suite.

    Returns our offered line (whose key we send with); the answer's key is the one we receive with.
    """
    reply = CryptoAttribute.parse(answer) if isinstance(answer, str) else answer
    for line in offered:
        if line.tag == reply.tag:
            if line.suite != reply.suite:
                raise NoAcceptableCrypto(
                    f"answer tag {reply.tag} names {reply.suite}, we offered {line.suite}"
                )
            if reply.srtp_suite is None or not _acceptable(reply):
                raise NoAcceptableCrypto(f"answer {reply.tag} {reply.suite} is not usable")
            return line
    raise NoAcceptableCrypto(f"answer tag {reply.tag} matches no offered crypto line")


def _raise_for(exc: pylibsrtp.Error, what: str) -> SrtpError:
    message = str(exc)
    if "authentication" in message:
        return SrtpAuthError(f"{what}: authentication failed")
    if "replay" in message:
        return SrtpReplayError(f"{what}: replayed or too old ({message})")
    return SrtpError(f"{what}: {message}")


class SrtpSession:
    """One direction of SRTP/SRTCP for every SSRC of a media stream (RFC 3711).

    An OUTBOUND session protects (our key, from our crypto line); an INBOUND one unprotects (the
    peer's key, from their line). libsrtp keeps the rollover counter and replay window per SSRC.
    """

    def __init__(
        self,
        direction: Direction,
        suite: SrtpSuite,
        key_salt: bytes,
        *,
        mki: bytes = b"",
        window_size: int = 128,
    ) -> None:
        if len(key_salt) != suite.key_salt_length:
            raise SrtpError(
                f"{suite.value} needs {suite.key_salt_length} bytes of key||salt, got {len(key_salt)}"
            )
        ssrc_type = (
            pylibsrtp.Policy.SSRC_ANY_OUTBOUND
            if direction is Direction.OUTBOUND
            else pylibsrtp.Policy.SSRC_ANY_INBOUND
        )
        policy = pylibsrtp.Policy(
            key=bytes(key_salt), ssrc_type=ssrc_type, srtp_profile=suite.profile
        )
        # RFC 3711 §3.3.2: the replay list must hold at least 64 indices.
        policy.window_size = max(64, window_size)
        self.direction = direction
        self.suite = suite
        self.mki = bytes(mki)
        self._session = pylibsrtp.Session(policy)

    @classmethod
    def from_crypto(cls, direction: Direction, attribute: CryptoAttribute) -> SrtpSession:
        """A session keyed from a crypto line (ours for OUTBOUND, the peer's for INBOUND)."""
        suite = attribute.srtp_suite
        if suite is None or len(attribute.key_params) != 1:
            raise SrtpError(f"cannot key SRTP from crypto line {attribute.tag} {attribute.suite}")
        key = attribute.key_params[0]
        return cls(direction, suite, key.key_salt, mki=key.mki_bytes)

    def _need(self, direction: Direction, what: str) -> None:
        if self.direction is not direction:
            raise SrtpError(f"an {self.direction.value} SRTP session cannot {what}")

    def protect(self, packet: bytes) -> bytes:
        """RTP -> SRTP (RFC 3711 §3.1)."""
        self._need(Direction.OUTBOUND, "protect")
        try:
            out = self._session.protect(bytes(packet))
        except (pylibsrtp.Error, ValueError) as exc:
            raise SrtpError(f"SRTP protect failed: {exc}") from None
        return self._insert_mki(out, self.suite.rtp_tag_length)

    def protect_rtcp(self, packet: bytes) -> bytes:
        """RTCP -> SRTCP (RFC 3711 §3.4)."""
        self._need(Direction.OUTBOUND, "protect")
        try:
            out = self._session.protect_rtcp(bytes(packet))
        except (pylibsrtp.Error, ValueError) as exc:
            raise SrtpError(f"SRTCP protect failed: {exc}") from None
        return self._insert_mki(out, self.suite.rtcp_tag_length)

    def unprotect(self, packet: bytes) -> bytes:
        """SRTP -> RTP; raises :class:`SrtpAuthError` or :class:`SrtpReplayError`."""
        self._need(Direction.INBOUND, "unprotect")
        data = self._strip_mki(bytes(packet), self.suite.rtp_tag_length, 12)
        try:
            return self._session.unprotect(data)
        except pylibsrtp.Error as exc:
            raise _raise_for(exc, "SRTP") from None
        except ValueError as exc:
            raise SrtpError(f"SRTP: {exc}") from None

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """SRTCP -> RTCP; raises :class:`SrtpAuthError` or :class:`SrtpReplayError`."""
        self._need(Direction.INBOUND, "unprotect")
        # RTCP header (8) + E/index (4) must precede the MKI and tag (§3.4).
        data = self._strip_mki(bytes(packet), self.suite.rtcp_tag_length, 12)
        try:
            return self._session.unprotect_rtcp(data)
        except pylibsrtp.Error as exc:
            raise _raise_for(exc, "SRTCP") from None
        except ValueError as exc:
            raise SrtpError(f"SRTCP: {exc}") from None

    def _insert_mki(self, packet: bytes, tag_length: int) -> bytes:
        # RFC 3711 §3.1: ... encrypted portion | MKI | authentication tag.
        if not self.mki:
            return packet
        return packet[:-tag_length] + self.mki + packet[-tag_length:]

    def _strip_mki(self, packet: bytes, tag_length: int, header: int) -> bytes:
        if not self.mki:
            return packet
        size = len(self.mki)
        if len(packet) < header + size + tag_length:
            raise SrtpError(f"packet of {len(packet)} bytes too short for MKI and tag")
        start = len(packet) - tag_length - size
        if packet[start : start + size] != self.mki:
            # §3.3 step 1: an unknown MKI means no key for this packet.
            raise SrtpAuthError("MKI does not match the negotiated master key")
        return packet[:start] + packet[-tag_length:]


class SrtpChannel:
    """Both directions of one SDES-keyed media stream: our line sends, the peer's line receives."""

    def __init__(self, local: CryptoAttribute, remote: CryptoAttribute) -> None:
        if local.tag != remote.tag or local.suite != remote.suite:
            # §7.1.2: the answer reuses the chosen offer's tag and suite.
            raise NoAcceptableCrypto(
                f"local {local.tag} {local.suite} and remote {remote.tag} {remote.suite} differ"
            )
        self.outbound = SrtpSession.from_crypto(Direction.OUTBOUND, local)
        self.inbound = SrtpSession.from_crypto(Direction.INBOUND, remote)

    def protect(self, packet: bytes) -> bytes:
        """Our RTP -> SRTP."""
        return self.outbound.protect(packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        """Our RTCP -> SRTCP."""
        return self.outbound.protect_rtcp(packet)

    def unprotect(self, packet: bytes) -> bytes:
        """Their SRTP -> RTP."""
        return self.inbound.unprotect(packet)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """Their SRTCP -> RTCP."""
        return self.inbound.unprotect_rtcp(packet)
