"""Answering a re-offer inside a dialog (RFC 3264 §8), sans-IO: hold, resume, a moved address.

A re-INVITE (RFC 3261 §14) or an UPDATE (RFC 3311) carrying SDP modifies the running session. The
answer keeps what runs — the codec, the SRTP keys, the session id and port — and follows what the
re-offer changed: the direction (§8.4 hold: ``sendonly`` is answered ``recvonly``, ``inactive`` with
``inactive``, and the RFC 2543 form ``c=0.0.0.0`` means "send me nothing", §8.4 last paragraph), the
peer's address or port, rtcp-mux. Switching the codec or the SRTP key in the middle of a call is not
supported: that re-offer gets 488 and the session stays as it was (RFC 3261 §14.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .offer_answer import (
    NegotiatedMedia,
    NotAcceptableHere,
    build_answer,
    negotiate,
    next_version,
)
from .sdp import Codec, CryptoAttribute, SessionDescription

__all__ = ["Reanswer", "answer_reoffer"]


@dataclass(frozen=True, slots=True)
class Reanswer:
    """Our answer to a re-offer and the stream both sides now act on."""

    answer: SessionDescription
    negotiated: NegotiatedMedia
    #: The answer differs from the last description we sent, so its o= version went up (§8).
    changed: bool


def answer_reoffer(
    offer: SessionDescription,
    *,
    previous: SessionDescription,
    current: NegotiatedMedia,
    supported: Sequence[Codec],
    rtcp_mux: bool = False,
) -> Reanswer:
    """Answer ``offer`` in a session whose last local description was ``previous``.

    ``current`` is the stream as negotiated so far and ``supported`` the codecs we answered from
    (telephone-events among them). The answer lists the running codec (and telephone-event) only,
    on ``previous``'s address and port, with the same SRTP key; its o= version is ``previous``'s,
    plus one when anything else changed (RFC 3264 §8). Raises NotAcceptableHere (488) for a
    re-offer that drops the running codec, changes the profile or the peer's SRTP key, or moves
    the audio stream to another m-line.
    """
    index = current.index
    if index >= len(offer.media) or offer.media[index].media != "audio":
        raise NotAcceptableHere(f"the re-offer has no audio stream at m-line {index} (RFC 3264 §8)")
    offered = offer.media[index]
    if offered.proto != current.profile:
        raise NotAcceptableHere(
            f"the re-offer changes the profile {current.profile} to {offered.proto}"
        )
    if not any(c.matches(current.codec) for c in offered.codecs):
        raise NotAcceptableHere(
            f"the re-offer drops the running codec {current.codec.name}/{current.codec.clock_rate}"
            " (changing codec in a call is not supported)"
        )
    ours = [c for c in supported if c.matches(current.codec) or c.is_telephone_event]
    mine = previous.media[index]
    conn = previous.media_connection(index)
    address = conn.host if conn is not None else previous.origin.address
    answer = build_answer(
        offer,
        address=address,
        port=mine.port,
        codecs=ours,
        session_id=previous.origin.session_id,
        session_version=previous.origin.session_version,
        crypto_answer=_same_keys(offer, current),
        ptime=mine.ptime,
        rtcp_mux=rtcp_mux,
        username=previous.origin.username,
    )
    negotiated = negotiate(offer, answer, role="answerer")
    if negotiated.index != index:
        raise NotAcceptableHere(f"the re-offer moves the audio stream off m-line {index}")
    changed = replace(answer, origin=previous.origin) != previous
    if changed:
        answer = next_version(answer)
    return Reanswer(answer, negotiated, changed)


def _same_keys(offer: SessionDescription, current: NegotiatedMedia) -> CryptoAttribute | None:
    """Our crypto line again, tagged as the re-offered line that still carries the peer's key.

    RFC 4568 §7.1.4 lets a re-offer keep its keys; a new key would need a new SRTP context on both
    sides, which we do not do in the middle of a call.
    """
    theirs, ours = current.remote_crypto, current.local_crypto
    if theirs is None or ours is None:
        return None
    for line in offer.media[current.index].crypto:
        if line.suite == theirs.suite and line.key_params == theirs.key_params:
            return replace(ours, tag=line.tag)
    raise NotAcceptableHere("the re-offer changes the SRTP key (re-keying is not supported)")
