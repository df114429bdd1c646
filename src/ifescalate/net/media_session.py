"""The glue between calls and :class:`~ifescalate.net.rtp.MediaSession`, and the CLI's audio ends.

The UA calls three functions, so its own code only grows by a few lines:

- :func:`answer_with_media` for an incoming INVITE: a session on a fresh port pair answers the
  offer (or makes the offer of our 2xx when the INVITE had none, RFC 3264 / RFC 3261 §13.2.1);
- :func:`offer_with_media` for an outgoing INVITE: RTP/SAVP with an SDES key on TLS calls;
- :func:`start_media` when the dialog is confirmed (UAS at 2xx, UAC at 2xx, or at the ACK that
  carries the answer), and the call's end closes the session;
- :func:`reanswer_with_media` for a re-INVITE or UPDATE with an offer (hold, resume, RFC 3264 §8).

The CLI's ``--play``, ``--record`` and ``--echo`` become a :class:`MediaConfig` whose ``on_start``
attaches a looping WAV source, a WAV recorder and/or an echo to each session
(:func:`cli_media_config`).
"""

from __future__ import annotations

import logging
import wave
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..media.frames import AudioFrame, MediaError, samples_per_frame
from ..media.resample import Resampler
from ..sip.sdp import NotAcceptableHere
from .codec_prefs import DEFAULT_PREFERENCE
from .rtp import MediaConfig, MediaSession, RtpPortError, RtpPortPool

if TYPE_CHECKING:
    from ..sip.sdp import Codec
    from .ua import Call, UserAgent

log = logging.getLogger("ifescalate.media")

__all__ = [
    "Echo",
    "MediaConfig",
    "WavLoop",
    "WavRecorder",
    "answer_with_media",
    "cli_media_config",
    "offer_with_media",
    "reanswer_with_media",
    "start_media",
]


# --------------------------------------------------------------------------------- the UA's hooks


def _open(ua: UserAgent, config: MediaConfig, host: str, call_id: str) -> MediaSession:
    try:
        return MediaSession(ua.ep.loop, config.port_pool(), host, config=config, call_id=call_id)
    except RtpPortError as exc:
        raise NotAcceptableHere(f"no media port: {exc}") from None


def _sid(ua: UserAgent) -> int:
    return int.from_bytes(bytes.fromhex(ua.ids.token(4)), "big")


def answer_with_media(
    ua: UserAgent,
    call: Call,
    transport: str,
    codecs: tuple[Codec, ...] | None = None,
    session_id: int | None = None,
) -> bytes:
    """The SDP of our 2xx for ``call``, from a new session stored on ``call.media``.

    ``codecs`` default to the media configuration's (:meth:`MediaConfig.sdp_codecs`).

    Raises NotAcceptableHere (488) when the offer cannot be served; the session is then closed.
    """
    config = ua.config.media
    assert config is not None
    host = ua._media_host(transport)
    codecs = codecs or config.sdp_codecs()
    session_id = session_id if session_id is not None else _sid(ua)
    session = _open(ua, config, host, call.call_id)
    try:
        if call.invite.body:
            body = session.answer(
                call.invite.body, address=host, codecs=codecs, session_id=session_id
            )
        else:
            secure = transport == "TLS"
            body = session.offer(address=host, codecs=codecs, session_id=session_id, secure=secure)
    except BaseException:
        session.close()
        raise
    call.media = session
    return body


def offer_with_media(
    ua: UserAgent, transport: str, codecs: tuple[Codec, ...] | None = None
) -> tuple[MediaSession, bytes]:
    """A session for an outgoing call and the offer to put in its INVITE.

    ``codecs`` default to the media configuration's, best first (:meth:`MediaConfig.sdp_codecs`).
    """
    config = ua.config.media
    assert config is not None
    codecs = codecs or config.sdp_codecs()
    host = ua._media_host(transport)
    session = _open(ua, config, host, "")
    sid = _sid(ua)
    body = session.offer(address=host, codecs=codecs, session_id=sid, secure=transport == "TLS")
    return session, body


def start_media(ua: UserAgent, call: Call, answer: bytes | None) -> None:
    """Start ``call.media`` once the offer/answer is complete; ``answer`` is the peer's, if any.

    A peer answer that cannot be used ends the call (BYE with reason "bad-media"): a call we cannot
    hear is worse than no call.
    """
    session = call.media
    if session is None or session.started or session.closed:
        return
    session.call_id = call.call_id
    try:
        if answer and session.negotiated is None:
            session.accept_answer(answer)
    except NotAcceptableHere as exc:
        log.warning("call %s: unusable SDP answer: %s", call.call_id, exc)
        session.close()
        ua.ep.loop.create_task(ua._send_bye(call, reason="bad-media"))
        return
    except ValueError as exc:  # SipParseError and friends
        log.warning("call %s: unparsable SDP answer: %s", call.call_id, exc)
        session.close()
        ua.ep.loop.create_task(ua._send_bye(call, reason="bad-media"))
        return
    if session.negotiated is None:
        return  # the answer comes in the ACK (offer in our 2xx)
    session.on_timeout = lambda: _no_media(ua, call)
    session.start()


def reanswer_with_media(call: Call, offer: bytes) -> bytes:
    """The body of our 2xx to a re-INVITE or UPDATE in ``call`` (RFC 3261 §14.2, RFC 3311 §5.2).

    With an offer and a running session, the session answers it (hold, resume: RFC 3264 §8) and
    the answer becomes the call's local SDP; otherwise the current local SDP is sent again.
    Raises NotAcceptableHere (488) / SipParseError (400) with the session unchanged.
    """
    session = call.media
    if not offer or session is None or session.closed or session.negotiated is None:
        return call.local_sdp
    body = session.update(offer)
    call.local_sdp, call.remote_sdp = body, offer
    return body


def _no_media(ua: UserAgent, call: Call) -> None:
    if call.end_reason is None:
        timeout = call.media.config.no_media_timeout if call.media is not None else 0
        log.warning("call %s: no RTP for %g s: hanging up (no-media)", call.call_id, timeout)
        ua.ep.loop.create_task(ua._send_bye(call, reason="no-media"))


# ------------------------------------------------------------------------------ CLI audio ends


class WavLoop:
    """A 16-bit WAV (any rate with whole 20 ms frames, channels averaged) played in a loop.

    The whole file is resampled to ``rate`` once, at creation (call start): the session's
    :attr:`~MediaSession.sample_rate`, so 8 kHz for G.711, 16 kHz for G.722, 48 kHz for Opus.
    """

    def __init__(self, path: Path | str, rate: int) -> None:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise MediaError(f"{path}: need 16-bit PCM, got {wav.getsampwidth() * 8}-bit")
            channels, source_rate = wav.getnchannels(), wav.getframerate()
            data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        mono = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
        self.frames = _resample_all(mono, source_rate, rate)
        if not self.frames:
            raise MediaError(f"{path}: shorter than one 20 ms frame")
        self._index = 0

    def __call__(self) -> AudioFrame:
        frame = self.frames[self._index]
        self._index = (self._index + 1) % len(self.frames)
        return frame


def _resample_all(mono: AudioFrame, rate_in: int, rate_out: int) -> list[AudioFrame]:
    step = samples_per_frame(rate_in)
    resampler = Resampler(rate_in, rate_out)
    whole = len(mono) // step
    return [resampler.process(mono[i * step : (i + 1) * step]) for i in range(whole)]


class WavRecorder:
    """Writes every received frame to a 16-bit mono WAV at ``rate`` (the session's sample rate:
    the codec's audio rate, 16 kHz for G.722 although its RTP clock is 8 kHz); close() finishes it.
    """

    def __init__(self, path: Path | str, rate: int) -> None:
        self.path = Path(path)
        self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - closed by close()
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)
        self.frames = 0

    def __call__(self, frame: AudioFrame) -> None:
        self._wav.writeframes(frame.astype("<i2").tobytes())
        self.frames += 1

    def close(self) -> None:
        self._wav.close()


class Echo:
    """Sends back what it hears, one frame later (bounded: at most 1 s is held)."""

    def __init__(self) -> None:
        self._frames: deque[AudioFrame] = deque(maxlen=50)

    def sink(self, frame: AudioFrame) -> None:
        self._frames.append(frame)

    def source(self) -> AudioFrame | None:
        return self._frames.popleft() if self._frames else None


def _say(text: str) -> None:
    print(text, flush=True)


def _numbered(path: Path, n: int) -> Path:
    """The n-th call's recording: PATH for the first, PATH-STEM-n.wav after."""
    return path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")


def cli_media_config(
    *,
    play: str | None = None,
    record: str | None = None,
    echo: bool = False,
    verbose: bool = False,
    codecs: Sequence[str] | None = None,
    no_media_timeout: float = 30.0,
    rtcp_mux: bool = True,
    rtp_ports: str = "40000-49999",
) -> MediaConfig:
    """``--play WAV`` / ``--record WAV`` / ``--echo`` as a MediaConfig for ``UaConfig.media``.

    Files are played and recorded at the negotiated codec's sample rate; ``codecs`` (encoding
    names, best first) replaces the default preference opus > G722 > PCMU > PCMA.
    ``no_media_timeout`` (0: never) and ``rtcp_mux`` are :class:`MediaConfig`'s; ``rtp_ports``
    is its port range as ``LOW-HIGH``.
    """
    low, sep, high = rtp_ports.partition("-")
    if not (sep and low.strip().isdigit() and high.strip().isdigit()):
        raise MediaError(f"--rtp-ports takes LOW-HIGH, got {rtp_ports!r}")
    RtpPortPool(int(low), int(high))  # raises ValueError for a range without an even/odd pair
    if no_media_timeout < 0:
        raise MediaError(f"--no-media-timeout must be 0 or more seconds, got {no_media_timeout}")
    calls = [0]

    def on_start(session: MediaSession) -> None:
        calls[0] += 1
        rate = session.sample_rate
        if play is not None:
            session.source = WavLoop(play, rate)
        sinks: list[Callable[[AudioFrame], None]] = []
        if record is not None:
            recorder = WavRecorder(_numbered(Path(record), calls[0]), rate)
            sinks.append(recorder)
            session.on_close.append(recorder.close)
        if echo:
            loop_back = Echo()
            session.source = session.source or loop_back.source
            sinks.append(loop_back.sink)
        if sinks:
            session.sink = sinks[0] if len(sinks) == 1 else _fan_out(sinks)
        session.on_dtmf = lambda key: _say(f"dtmf {key} call-id {session.call_id}")
        session.on_direction = lambda direction: _say(
            f"media {direction} call-id {session.call_id} sent {session.counters.sent}"
        )
        if verbose:
            codec = session.codec.name if session.codec is not None else "?"
            _say(f"media {session.call_id} {codec} port {session.port} srtp {bool(session.srtp)}")
            session.on_close.append(lambda: _say(f"media ended {session.stats()}"))

    return MediaConfig(
        port_start=int(low),
        port_end=int(high),
        on_start=on_start,
        no_media_timeout=no_media_timeout,
        rtcp_mux=rtcp_mux,
        codecs=tuple(codecs) if codecs is not None else DEFAULT_PREFERENCE,
    )


def _fan_out(sinks: list[Callable[[AudioFrame], None]]) -> Callable[[AudioFrame], None]:
    def sink(frame: AudioFrame) -> None:
        for each in sinks:
            each(frame)

    return sink
