"""The offer/answer model (RFC 3264) for one audio stream, on the SDP data model of ``sdp``, sans-IO.

``build_offer`` and ``build_answer`` (which rejects every other stream with port 0 in its position,
RFC 3264 §6) make descriptions; ``negotiate`` gives the common view both sides act on;
``next_version`` and ``with_direction`` turn a description into a re-offer (RFC 3264 §8).
Every public name here is also importable from ``ifescalate.sip.sdp``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from .errors import SipError, SipParseError
from .sdp import (
    DEFAULT_PTIME,
    DIRECTIONS,
    Attribute,
    Codec,
    Connection,
    CryptoAttribute,
    Direction,
    MediaDescription,
    Origin,
    SessionDescription,
)

__all__ = [
    "NegotiatedMedia",
    "NotAcceptableHere",
    "build_answer",
    "build_offer",
    "negotiate",
    "next_version",
    "with_direction",
]


class NotAcceptableHere(SipError):
    """RFC 3261 §21.4.26 / RFC 3264 §6: nothing in the offer is acceptable (no common audio codec)."""

    status = 488
    reason = "Not Acceptable Here"


_ANSWERABLE_PROFILES = ("RTP/AVP", "RTP/SAVP")


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The agreed audio stream, seen from one side (RFC 3264 §6.1 for the answerer, §7 offerer).

    ``codec`` carries the payload type to put in the RTP we send (the number the peer listed);
    ``direction`` is what *we* may do; ``ptime`` is what the peer asked to receive.
    """

    index: int
    remote_address: str
    remote_port: int
    remote_rtcp_address: str
    remote_rtcp_port: int
    rtcp_mux: bool
    codec: Codec
    codecs: tuple[Codec, ...]
    telephone_event: int | None
    direction: Direction
    ptime: int
    profile: str
    local_crypto: CryptoAttribute | None = None
    remote_crypto: CryptoAttribute | None = None

    @property
    def sends(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


def _bits(direction: Direction) -> tuple[bool, bool]:
    return direction in ("sendrecv", "sendonly"), direction in ("sendrecv", "recvonly")


def _from_bits(send: bool, recv: bool) -> Direction:
    if send:
        return "sendrecv" if recv else "sendonly"
    return "recvonly" if recv else "inactive"


def _addrtype(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        return "IP4"  # an FQDN (RFC 8866 §5.7); IP4 is what every peer assumes for names


def _check_codecs(codecs: Sequence[Codec]) -> None:
    pts = [c.payload_type for c in codecs]
    if not codecs or len(set(pts)) != len(pts):
        raise ValueError(f"codecs must be non-empty with distinct payload types, got {pts}")


def _codec_attributes(codecs: Sequence[Codec]) -> list[Attribute]:
    # rtpmap even for static types: RFC 3264 §5.1 recommends it and it costs a line.
    attrs = []
    for codec in codecs:
        attrs.append(Attribute("rtpmap", codec.rtpmap))
        if codec.fmtp:
            attrs.append(Attribute("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    return attrs


def _audio_media(
    *,
    port: int,
    profile: str,
    codecs: Sequence[Codec],
    direction: Direction,
    ptime: int | None,
    rtcp_mux: bool,
    crypto: Sequence[CryptoAttribute],
) -> MediaDescription:
    attrs = _codec_attributes(codecs)
    if ptime is not None:
        attrs.append(Attribute("ptime", str(ptime)))
    attrs.append(Attribute(direction))
    if rtcp_mux:
        attrs.append(Attribute("rtcp-mux"))
    attrs.extend(Attribute("crypto", str(c)) for c in crypto)
    formats = tuple(str(c.payload_type) for c in codecs)
    return MediaDescription("audio", port, profile, formats, attributes=tuple(attrs))


def _session(
    username: str, session_id: int, session_version: int, address: str, media: MediaDescription
) -> SessionDescription:
    addrtype = _addrtype(address)
    return SessionDescription(
        origin=Origin(username, session_id, session_version, "IN", addrtype, address),
        connection=Connection(address, addrtype),
        media=(media,),
    )


def build_offer(
    *,
    address: str,
    port: int,
    codecs: Sequence[Codec],
    session_id: int,
    session_version: int,
    direction: Direction = "sendrecv",
    crypto: Sequence[CryptoAttribute] | None = None,
    profile: str = "RTP/AVP",
    ptime: int | None = DEFAULT_PTIME,
    rtcp_mux: bool = False,
    username: str = "-",
) -> SessionDescription:
    """An offer with one audio stream (RFC 3264 §5.1), codecs in our order of preference.

    SDES keys (RFC 4568) go in ``crypto``; pass ``profile="RTP/SAVP"`` with them, as RFC 4568 §3
    defines crypto for the SRTP profiles only. Use ``address="0.0.0.0"`` only for an offer whose
    address is not yet known (RFC 3264 §8.4); hold is ``direction="sendonly"``.
    """
    _check_codecs(codecs)
    media = _audio_media(
        port=port,
        profile=profile,
        codecs=codecs,
        direction=direction,
        ptime=ptime,
        rtcp_mux=rtcp_mux,
        crypto=crypto or (),
    )
    return _session(username, session_id, session_version, address, media)


def build_answer(
    offer: SessionDescription,
    *,
    address: str,
    port: int,
    codecs: Sequence[Codec],
    session_id: int,
    direction: Direction = "sendrecv",
    session_version: int | None = None,
    crypto_answer: CryptoAttribute | None = None,
    ptime: int | None = DEFAULT_PTIME,
    rtcp_mux: bool = False,
    prefer_offer_order: bool = True,
    username: str = "-",
) -> SessionDescription:
    """Answer ``offer`` (RFC 3264 §6): accept the first usable audio stream, reject the rest.

    ``codecs`` are those we support, in our preference order; the answer keeps the offerer's
    payload type numbers (§6.1) and, as §6.1 recommends, the offer's relative order unless
    ``prefer_offer_order`` is False. telephone-event is kept whenever both sides have it. Every
    other stream is answered with port 0 in the same position (§6). An RTP/SAVP stream is accepted
    only with ``crypto_answer``, whose tag must name an offered crypto line of the same suite
    (RFC 4568 §7.1.2). Raises NotAcceptableHere (488) when no audio stream can be accepted.
    """
    _check_codecs(codecs)
    answers: list[MediaDescription] = []
    reasons: list[str] = []
    accepted = False
    for index, offered in enumerate(offer.media):
        result: MediaDescription | str = "only one audio stream is answered"
        if not accepted:
            result = _answer_stream(
                offer,
                index,
                codecs=codecs,
                port=port,
                direction=direction,
                crypto=crypto_answer,
                ptime=ptime,
                rtcp_mux=rtcp_mux,
                prefer_offer_order=prefer_offer_order,
            )
        if isinstance(result, str):
            reasons.append(f"m-line {index} ({offered.media}): {result}")
            answers.append(MediaDescription(offered.media, 0, offered.proto, offered.formats))
        else:
            accepted = True
            answers.append(result)
    if not accepted:
        raise NotAcceptableHere(
            "no acceptable audio stream: " + "; ".join(reasons or ["no m= line"])
        )
    version = session_id if session_version is None else session_version
    answer = _session(username, session_id, version, address, answers[0])
    return replace(answer, media=tuple(answers))


def _answer_stream(
    offer: SessionDescription,
    index: int,
    *,
    codecs: Sequence[Codec],
    port: int,
    direction: Direction,
    crypto: CryptoAttribute | None,
    ptime: int | None,
    rtcp_mux: bool,
    prefer_offer_order: bool,
) -> MediaDescription | str:
    """The accepted media description for stream ``index``, or why it must be rejected."""
    offered = offer.media[index]
    if offered.media != "audio":
        return "not audio"
    if offered.port == 0:
        return "disabled in the offer"
    if offered.proto not in _ANSWERABLE_PROFILES:
        return f"profile {offered.proto} not supported"
    crypto_lines: tuple[CryptoAttribute, ...] = ()
    if offered.proto == "RTP/SAVP":
        if crypto is None:
            return "SRTP offered and no crypto answer given"
        if not any(c.tag == crypto.tag and c.suite == crypto.suite for c in offered.crypto):
            return f"crypto answer tag {crypto.tag} {crypto.suite} matches no offered crypto line"
        crypto_lines = (crypto,)
    common = _common_codecs(offered.codecs, codecs, prefer_offer_order)
    if not any(c.is_audio_codec for c in common):
        return "no common audio codec"
    return _audio_media(
        port=port,
        profile=offered.proto,
        codecs=common,
        direction=_answer_direction(offer, index, direction),
        ptime=ptime,
        rtcp_mux=rtcp_mux and offered.rtcp_mux and _mux_safe(common),  # RFC 5761 §5.1.1
        crypto=crypto_lines,
    )


def _mux_safe(codecs: Sequence[Codec]) -> bool:
    """RFC 5761 §4: RTP payload types 64-95 collide with RTCP packet types on a shared port, so a
    stream using one of them is answered without rtcp-mux (separate RTCP port)."""
    return not any(64 <= c.payload_type <= 95 for c in codecs)


def _common_codecs(
    offered: Sequence[Codec], supported: Sequence[Codec], prefer_offer_order: bool
) -> list[Codec]:
    """Offered codecs we support, with the offer's payload types (RFC 3264 §6.1)."""
    pairs = [(rank, o, s) for o in offered for rank, s in enumerate(supported) if o.matches(s)]
    if not prefer_offer_order:
        pairs.sort(key=lambda pair: pair[0])  # stable: ties keep the offer's order
    common: list[Codec] = []
    for _, ours_offered, ours in pairs:
        if all(c.payload_type != ours_offered.payload_type for c in common):
            # Our fmtp declares what we receive (e.g. telephone-event events); else echo theirs.
            common.append(replace(ours_offered, fmtp=ours.fmtp or ours_offered.fmtp))
    return common


def _answer_direction(offer: SessionDescription, index: int, local: Direction) -> Direction:
    """RFC 3264 §6.1: sendonly is answered recvonly, recvonly sendonly, inactive inactive."""
    their_send, their_recv = _remote_bits(offer, index)
    our_send, our_recv = _bits(local)
    return _from_bits(our_send and their_recv, our_recv and their_send)


def _remote_bits(sdp: SessionDescription, index: int) -> tuple[bool, bool]:
    send, recv = _bits(sdp.media_direction(index))
    conn = sdp.media_connection(index)
    # RFC 3264 §8.4: c=0.0.0.0 means "send nothing to me", whatever the attribute says.
    return send, recv and not (conn is not None and conn.is_null)


def negotiate(
    offer: SessionDescription,
    answer: SessionDescription,
    *,
    role: Literal["offerer", "answerer"] = "offerer",
) -> NegotiatedMedia:
    """The audio stream both sides agreed on, from the point of view of ``role``.

    The offerer calls it on receiving the answer (RFC 3264 §7); the answerer on the answer it
    sent. Raises NotAcceptableHere when the answer breaks §6 (wrong m-line count) or accepted no
    audio stream, SipParseError when an accepted stream has no connection address.
    """
    if len(answer.media) != len(offer.media):
        raise NotAcceptableHere(
            f"answer has {len(answer.media)} m-lines, offer {len(offer.media)} (RFC 3264 §6)"
        )
    local, remote = (offer, answer) if role == "offerer" else (answer, offer)
    for index, (o, a) in enumerate(zip(offer.media, answer.media, strict=True)):
        if o.media == "audio" and o.port != 0 and a.port != 0:
            return _negotiated(index, local, remote, answer)
    raise NotAcceptableHere("the answer accepted no audio stream")


def _negotiated(
    index: int, local: SessionDescription, remote: SessionDescription, answer: SessionDescription
) -> NegotiatedMedia:
    lm, rm = local.media[index], remote.media[index]
    conn = remote.media_connection(index)
    if conn is None:
        raise SipParseError(
            f"m-line {index} has no c= line at media or session level (RFC 8866 §5.7)"
        )
    codecs = _agreed_codecs(answer.media[index].codecs, lm.codecs, rm.codecs)
    codec = next((c for c in codecs if c.is_audio_codec), None)
    if codec is None:
        raise NotAcceptableHere(f"m-line {index}: no common audio codec in the answer")
    events = [c for c in codecs if c.is_telephone_event]
    event = next((c for c in events if c.clock_rate == codec.clock_rate), None)
    event = event or (events[0] if events else None)
    local_send, local_recv = _bits(local.media_direction(index))
    remote_send, remote_recv = _remote_bits(remote, index)
    mux = lm.rtcp_mux and rm.rtcp_mux
    rtcp = rm.rtcp
    rtcp_port = rm.port if mux else rtcp.port if rtcp else rm.port + 1  # RFC 3550 §11
    local_crypto, remote_crypto = _agreed_crypto(index, lm, rm, answer.media[index])
    return NegotiatedMedia(
        index=index,
        remote_address=conn.host,
        remote_port=rm.port,
        remote_rtcp_address=(rtcp.address if rtcp and rtcp.address and not mux else conn.host),
        remote_rtcp_port=rtcp_port,
        rtcp_mux=mux,
        codec=codec,
        codecs=codecs,
        telephone_event=event.payload_type if event else None,
        direction=_from_bits(local_send and remote_recv, local_recv and remote_send),
        ptime=rm.ptime or DEFAULT_PTIME,
        profile=rm.proto,
        local_crypto=local_crypto,
        remote_crypto=remote_crypto,
    )


def _agreed_codecs(
    answered: Sequence[Codec], local: Sequence[Codec], remote: Sequence[Codec]
) -> tuple[Codec, ...]:
    """The answer's codecs in its order, present on both sides, numbered as the peer numbers them."""
    agreed = []
    for codec in answered:
        ours = any(codec.matches(c) for c in local)
        theirs = next((c for c in remote if c.matches(codec)), None)
        if ours and theirs is not None:
            agreed.append(theirs)
    return tuple(agreed)


def _agreed_crypto(
    index: int, lm: MediaDescription, rm: MediaDescription, am: MediaDescription
) -> tuple[CryptoAttribute | None, CryptoAttribute | None]:
    """(ours, theirs): the answer's single crypto line and the offered one with its tag (RFC 4568 §7)."""
    if "SAVP" not in am.proto.upper():
        return None, None
    chosen = am.crypto
    if len(chosen) != 1:
        raise NotAcceptableHere(
            f"m-line {index}: an SRTP answer needs exactly one crypto line, got {len(chosen)}"
        )
    tag = chosen[0].tag
    ours = next((c for c in lm.crypto if c.tag == tag), None)
    theirs = next((c for c in rm.crypto if c.tag == tag), None)
    if ours is None or theirs is None or ours.suite != theirs.suite:
        raise NotAcceptableHere(f"m-line {index}: crypto tag {tag} does not match the offer")
    return ours, theirs


def next_version(sdp: SessionDescription) -> SessionDescription:
    """The same description with o= version + 1, as every changed re-offer needs (RFC 3264 §8)."""
    origin = replace(sdp.origin, session_version=sdp.origin.session_version + 1)
    return replace(sdp, origin=origin)


def with_direction(
    sdp: SessionDescription, direction: Direction, *, index: int | None = None
) -> SessionDescription:
    """Set the direction of every live stream (or only ``index``), e.g. ``sendonly`` to hold.

    Session-level direction attributes are dropped so the media-level one is the only word
    (RFC 8866 §6.7). The version is left alone: combine with ``next_version`` for a re-offer.
    """
    media = []
    for i, m in enumerate(sdp.media):
        if m.port != 0 and (index is None or i == index):
            kept = tuple(a for a in m.attributes if a.name not in DIRECTIONS)
            m = replace(m, attributes=(*kept, Attribute(direction)))
        media.append(m)
    if index is not None:
        return replace(sdp, media=tuple(media))  # other streams keep what the session level says
    session_attrs = tuple(a for a in sdp.attributes if a.name not in DIRECTIONS)
    return replace(sdp, media=tuple(media), attributes=session_attrs)
