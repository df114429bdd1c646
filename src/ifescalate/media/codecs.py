"""Audio codecs behind one small protocol: G.711 (numpy tables), G.722 and Opus (PyAV/FFmpeg).

A codec turns one 20 ms frame (:mod:`ifescalate.media.frames`) at its ``clock_rate`` into one RTP
payload and back. ``clock_rate`` is the audio sample rate of the frames; ``rtp_clock_rate`` is the
rate of the RTP timestamp, which differs for G.722: RFC 3551 §4.5.2 keeps its RTP clock at 8000 Hz
"for historical reasons" although it samples at 16 kHz, so a 20 ms G.722 packet advances the
timestamp by 160, not 320.

G.722 and Opus hold predictor / range-coder state across packets, so a codec object belongs to one
stream: make one per media stream (:func:`codec_for`) and feed it that stream's packets in order.
"""

from __future__ import annotations

import importlib
from fractions import Fraction
from typing import Literal, Protocol, runtime_checkable

import av
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext
from av.error import FFmpegError

from ifescalate.media.frames import AudioFrame, MediaError, check_frame, samples_per_frame

__all__ = [
    "G711",
    "Codec",
    "CodecError",
    "G722Codec",
    "OpusCodec",
    "codec_for",
]


class CodecError(MediaError):
    """A payload could not be decoded, or a frame could not be encoded."""


@runtime_checkable
class Codec(Protocol):
    """What the media path needs from any audio codec."""

    @property
    def name(self) -> str:
        """The SDP encoding name (rtpmap), e.g. ``PCMU``, ``G722``, ``opus``."""
        ...

    @property
    def clock_rate(self) -> int:
        """Sample rate of the PCM frames this codec takes and gives, in Hz."""
        ...

    @property
    def rtp_clock_rate(self) -> int:
        """Rate of the RTP timestamp clock, in Hz (RFC 3551 §4.5)."""
        ...

    @property
    def payload_type(self) -> int:
        """RTP payload type: static from RFC 3551 or the dynamic one negotiated in SDP."""
        ...

    def encode(self, frame: AudioFrame) -> bytes:
        """One 20 ms frame at :attr:`clock_rate` -> one RTP payload."""
        ...

    def decode(self, payload: bytes) -> AudioFrame:
        """One RTP payload -> the PCM it carries at :attr:`clock_rate` (20 ms for 20 ms packets)."""
        ...


class G711:
    """Adapter giving :mod:`ifescalate.media.g711` codecs the full :class:`Codec` protocol.

    G.711 is stateless; the tables live in ``g711``, imported on first use so this module does not
    depend on it at import time.
    """

    rtp_clock_rate = 8000
    clock_rate = 8000

    def __init__(self, name: str, payload_type: int | None = None) -> None:
        g711 = importlib.import_module("ifescalate.media.g711")
        upper = name.upper()
        if upper not in ("PCMU", "PCMA"):
            raise CodecError(f"G.711 has PCMU and PCMA, not {name!r}")
        self._inner = getattr(g711, upper)
        # The tables themselves: the per-frame path skips the G711Codec dispatch and the second
        # frame check of the g711 functions (encode: one gather by the sample's bit pattern).
        self._encoding = g711.ULAW_ENCODE if upper == "PCMU" else g711.ALAW_ENCODE
        self._decoding = g711.ULAW_DECODE if upper == "PCMU" else g711.ALAW_DECODE
        self.name = upper
        # RFC 3551 §6 table 4: PCMU is static payload type 0, PCMA 8.
        self.payload_type = (
            payload_type if payload_type is not None else (0 if upper == "PCMU" else 8)
        )

    def encode(self, frame: AudioFrame) -> bytes:
        """160 samples -> 160 bytes."""
        check_frame(frame, self.clock_rate)
        payload: bytes = self._encoding.take(frame.view(np.uint16)).tobytes()
        return payload

    def decode(self, payload: bytes) -> AudioFrame:
        """One byte per sample -> int16 PCM."""
        frame: AudioFrame = self._decoding[np.frombuffer(payload, dtype=np.uint8)]
        return frame


class _AvCodec:
    """Shared PyAV plumbing: one encoder and one decoder context, s16 mono."""

    name: str
    clock_rate: int
    rtp_clock_rate: int
    payload_type: int

    def __init__(self, encoder: str, decoders: tuple[str, ...], options: dict[str, str]) -> None:
        self._encoder = self._context(encoder, "w")
        self._encoder.format = "s16"
        self._encoder.options = options
        self._encoder.open()
        self._decoder = self._open_decoder(decoders)
        self._pts = 0
        self._samples = samples_per_frame(self.clock_rate)

    def _context(self, codec: str, mode: Literal["r", "w"]) -> AudioCodecContext:
        try:
            context = av.CodecContext.create(codec, mode)
        except FFmpegError as exc:
            raise CodecError(f"FFmpeg here has no {codec} ({mode}): {exc}") from None
        if not isinstance(context, AudioCodecContext):
            raise CodecError(f"{codec} is not an audio codec")
        context.sample_rate = self.clock_rate
        context.layout = "mono"
        return context

    def _open_decoder(self, names: tuple[str, ...]) -> AudioCodecContext:
        for codec in names:
            if codec in av.codecs_available:
                decoder = self._context(codec, "r")
                decoder.open()
                return decoder
        raise CodecError(f"FFmpeg here has no decoder among {names}")

    def encode(self, frame: AudioFrame) -> bytes:
        """One 20 ms frame -> exactly one packet."""
        check_frame(frame, self.clock_rate)
        audio = av.AudioFrame.from_ndarray(frame.reshape(1, -1), format="s16", layout="mono")
        audio.sample_rate = self.clock_rate
        audio.pts = self._pts
        audio.time_base = Fraction(1, self.clock_rate)
        self._pts += frame.size
        try:
            packets = self._encoder.encode(audio)
        except FFmpegError as exc:
            raise CodecError(f"{self.name} encode failed: {exc}") from None
        if len(packets) != 1:
            raise CodecError(f"{self.name} encoder gave {len(packets)} packets for one frame")
        return bytes(packets[0])

    def decode(self, payload: bytes) -> AudioFrame:
        """One packet -> int16 PCM at :attr:`clock_rate`."""
        if not payload:
            raise CodecError(f"empty {self.name} payload")
        try:
            frames = self._decoder.decode(av.Packet(bytes(payload)))
        except FFmpegError as exc:
            raise CodecError(f"{self.name} payload does not decode: {exc}") from None
        if not frames:
            raise CodecError(f"{self.name} payload decoded to no audio")
        return np.concatenate([_to_int16(f.to_ndarray()) for f in frames])


def _to_int16(samples: npt.NDArray[np.generic]) -> AudioFrame:
    # Mono planar/packed both come out as shape (1, n); float decoders give [-1, 1].
    flat = samples.reshape(-1)
    if flat.dtype == np.int16:
        return flat.astype(np.int16, copy=True)
    if np.issubdtype(flat.dtype, np.floating):
        scaled = np.rint(flat.astype(np.float64) * 32768.0)
        out: AudioFrame = np.clip(scaled, -32768, 32767).astype(np.int16)
        return out
    raise CodecError(f"decoder gave unexpected sample type {flat.dtype}")


class G722Codec(_AvCodec):
    """ITU-T G.722 at 64 kbit/s: 16 kHz audio, 160 bytes per 20 ms, RTP clock 8000 (RFC 3551 §4.5.2)."""

    name = "G722"
    clock_rate = 16000
    rtp_clock_rate = 8000

    def __init__(self, payload_type: int = 9) -> None:
        # RFC 3551 §6 table 4: static payload type 9.
        self.payload_type = payload_type
        super().__init__("g722", ("g722",), {})


class OpusCodec(_AvCodec):
    """Opus (RFC 6716) mono at 48 kHz, RTP clock 48000 (RFC 7587 §4.1; SDP says ``opus/48000/2``)."""

    name = "opus"
    clock_rate = 48000
    rtp_clock_rate = 48000

    def __init__(self, payload_type: int = 111, *, bitrate: int = 32000, fec: bool = True) -> None:
        self.payload_type = payload_type
        options = {
            "application": "voip",
            "b": str(bitrate),
            # RFC 7587 §3.3: in-band FEC lets the receiver rebuild a lost packet from the next one.
            "fec": "1" if fec else "0",
            "packet_loss": "5" if fec else "0",
        }
        super().__init__("libopus", ("libopus", "opus"), options)


def codec_for(name: str, payload_type: int | None = None) -> Codec:
    """A fresh codec for one stream, by SDP encoding name (case-insensitive, RFC 4855 §3)."""
    key = name.upper()
    if key in ("PCMU", "PCMA"):
        return G711(key, payload_type)
    if key == "G722":
        return G722Codec() if payload_type is None else G722Codec(payload_type)
    if key == "OPUS":
        return OpusCodec() if payload_type is None else OpusCodec(payload_type)
    raise CodecError(f"no codec called {name!r}")
