"""A room's recording: the mix written to a WAV file as the room ticks, hashed when closed.

The file is written incrementally (one 20 ms frame per tick) so a long call never sits in memory;
the standard library's ``wave`` patches the RIFF sizes when closed. The SHA-256 of the finished
file goes into the TERMINATED witness entry, so anyone holding the file can prove it is the one
the witness names.
"""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path
from typing import NamedTuple

from ifescalate.media.frames import FRAME_SECONDS, AudioFrame, check_frame

__all__ = ["Recording", "WavRecorder", "sha256_file"]

_CHUNK = 1 << 16


class Recording(NamedTuple):
    """A finished recording: where it is, its SHA-256 (hex), and its duration in seconds."""

    path: Path
    sha256: str
    seconds: float


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class WavRecorder:
    """Mono 16-bit PCM WAV at ``rate`` Hz; :meth:`write` one frame per tick, then :meth:`close`."""

    def __init__(self, path: Path, rate: int) -> None:
        self.path = path
        self.rate = rate
        self.frames = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        # Kept open across ticks on purpose: closed by close().
        self._wav: wave.Wave_write | None = wave.open(str(path), "wb")  # noqa: SIM115
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)

    def write(self, frame: AudioFrame) -> None:
        """Append one 20 ms frame (little-endian on disk, as WAV requires)."""
        if self._wav is None:
            return
        check_frame(frame, self.rate)
        self._wav.writeframes(frame.astype("<i2").tobytes())
        self.frames += 1

    def close(self) -> Recording:
        """Finish the file (idempotent) and return its path, SHA-256 and duration."""
        if self._wav is not None:
            self._wav.close()
            self._wav = None
        return Recording(self.path, sha256_file(self.path), round(self.frames * FRAME_SECONDS, 3))
