"""Which audio codecs a call offers and which one it answers with (RFC 3264, RFC 4733, RFC 7587).

Pure functions over :mod:`ifescalate.sip.sdp` codecs, used by :class:`~ifescalate.net.rtp.MediaSession`:

- :func:`offer_codecs` turns a preference list of encoding names (default Opus > G.722 > PCMU >
  PCMA) into the payload formats of an offer, with one telephone-event per RTP clock in use.
  RFC 4733 §2.1 lets events run at any clock the SDP names; a telephone-event stream is sent
  with the SSRC and timestamp clock of the audio it interrupts, so it must share the audio
  codec's RTP clock: 48000 next to Opus (RFC 7587 §4.1, as WebRTC peers offer it), 8000 next to
  G.711 and next to G.722 (whose RTP clock is 8000 although it samples at 16 kHz, RFC 3551 §4.5.2).
- :func:`answer_codecs` narrows what we support to the single codec an answer carries, plus the
  telephone-event at its clock. RFC 3264 §6.1 lets an answer list several codecs, and the offerer
  may then switch between them at any packet; we run one decoder per call, so we answer with one.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..sip.sdp import G722, OPUS, PCMA, PCMU, TELEPHONE_EVENT, Codec, SessionDescription

__all__ = [
    "DEFAULT_PREFERENCE",
    "OPUS_FEC",
    "SUPPORTED",
    "TELEPHONE_EVENT_48K",
    "answer_codecs",
    "check_preference",
    "event_for",
    "offer_codecs",
]

#: Our default order: wideband first (Opus 48 kHz, then G.722 16 kHz), then narrowband G.711.
DEFAULT_PREFERENCE: tuple[str, ...] = ("opus", "G722", "PCMU", "PCMA")

#: RFC 7587 §6.1: ``useinbandfec=1`` tells the peer we decode in-band FEC (our encoder sends it too).
OPUS_FEC = Codec(OPUS.payload_type, OPUS.name, OPUS.clock_rate, OPUS.channels, "useinbandfec=1")

#: telephone-event at Opus's RTP clock; 110 is the number Chromium and Firefox use for it.
TELEPHONE_EVENT_48K = Codec(110, "telephone-event", 48000, fmtp="0-16")

#: Encoding name (lower case, RFC 4855 §3 names are case-insensitive) -> what we put in SDP.
SUPPORTED: dict[str, Codec] = {"opus": OPUS_FEC, "g722": G722, "pcmu": PCMU, "pcma": PCMA}

_EVENTS: dict[int, Codec] = {8000: TELEPHONE_EVENT, 48000: TELEPHONE_EVENT_48K}


def check_preference(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` if they are known, distinct and not empty, else ValueError naming the problem."""
    lowered = [name.lower() for name in names]
    unknown = [name for name in names if name.lower() not in SUPPORTED]
    if unknown:
        known = ", ".join(c.name for c in SUPPORTED.values())
        raise ValueError(f"unknown audio codec(s) {unknown}: choose among {known}")
    if not names or len(set(lowered)) != len(lowered):
        raise ValueError(f"codec preference must be non-empty without repeats, got {list(names)}")
    return tuple(names)


def offer_codecs(preference: Sequence[str] = DEFAULT_PREFERENCE) -> tuple[Codec, ...]:
    """The audio codecs in ``preference`` order, then one telephone-event per RTP clock they use."""
    audio = [SUPPORTED[name.lower()] for name in check_preference(preference)]
    events: list[Codec] = []
    for codec in audio:
        event = _EVENTS[codec.clock_rate]
        if event not in events:
            events.append(event)
    return (*audio, *events)


def event_for(codecs: Sequence[Codec], clock_rate: int) -> Codec | None:
    """The telephone-event among ``codecs`` at ``clock_rate`` (the audio's RTP clock), if any."""
    return next((c for c in codecs if c.is_telephone_event and c.clock_rate == clock_rate), None)


def answer_codecs(full_answer: SessionDescription, supported: Sequence[Codec]) -> tuple[Codec, ...]:
    """Our codecs for a one-codec answer: the first audio codec ``full_answer`` accepted, and the
    telephone-event at its clock when the offer had one (then it is in ``full_answer`` too).

    ``full_answer`` is what :func:`~ifescalate.sip.sdp.build_answer` made from every codec we
    support, in the order we want (the offer's, or ours); its first audio codec is the choice.
    """
    accepted = next(m for m in full_answer.media if m.media == "audio" and m.port != 0)
    chosen = next(c for c in accepted.codecs if c.is_audio_codec)
    ours = next(c for c in supported if c.matches(chosen))
    event = event_for(accepted.codecs, chosen.clock_rate)
    our_event = event_for(supported, chosen.clock_rate) if event is not None else None
    return (ours,) if our_event is None else (ours, our_event)
