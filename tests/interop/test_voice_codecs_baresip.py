"""G.722 and Opus both ways with baresip (its g722 and opus modules from Debian's baresip-core).

The same check as the G.711 tests in ``test_voice_baresip``: each side plays its own tone and records what
it hears; the tone each side sent must be in the other's recording (FFT peak within a few Hz, level
within ~3 dB). baresip is limited to one codec (``audio_codecs``), so the call can only run that codec,
and our ``media ...`` line must name it; the recording rates show the wideband path was really taken.
"""

from __future__ import annotations

import re
import wave
from pathlib import Path

import pytest

from tests.interop.test_sip_cli import HOST, Answerer, sip_call
from tests.interop.test_voice_baresip import assert_tone, wait_output
from tests.peers import Baresip, write_tone_wav
from tests.peers.baresip import TERMINATED

pytestmark = pytest.mark.interop

#: SDP encoding name -> the sample rate our side records at (the codec's audio rate, RFC 3551 §4.5.2
#: G.722 16 kHz although its RTP clock is 8 kHz; RFC 7587 Opus 48 kHz).
WIDEBAND = {"G722": 16000, "opus": 48000}


def _rate(path: Path) -> int:
    with wave.open(str(path), "rb") as wav:
        return wav.getframerate()


@pytest.fixture()
def tones(tmp_path: Path) -> tuple[Path, Path]:
    """(baresip's 440 Hz microphone, our 1000 Hz 16 kHz --play file)."""
    mic = write_tone_wav(tmp_path / "tone-440.wav", seconds=40.0)
    ours = write_tone_wav(tmp_path / "tone-1000.wav", seconds=5.0, freq=1000, rate=16000)
    return mic, ours


@pytest.mark.parametrize("codec", sorted(WIDEBAND))
def test_baresip_calls_us_wideband(tmp_path: Path, tones: tuple[Path, Path], codec: str) -> None:
    mic, ours = tones
    out = tmp_path / "answer.wav"
    extra = ["--record", str(out), "--play", str(ours)]
    with Answerer(f"udp:{HOST}:0", verbose=True, extra=extra) as answerer:
        with Baresip(
            "alice", dial=answerer.uri("udp"), duration=4, record=True, audio=mic, codecs=[codec]
        ) as alice:
            alice.wait_established(timeout=10)
            alice.wait_for(TERMINATED, timeout=15)
            wait_output(answerer, r"^media ended ")
            heard = alice.recordings("dec")
            assert len(heard) == 1, alice.log()
            assert_tone(heard[0], 1000)
        stats = wait_output(answerer, r"^media ended (.*)$").group(1)
    assert re.search(rf"^media \S+ {codec} port \d+ srtp False$", answerer.output(), re.M), (
        answerer.output()
    )
    assert "'lost': 0" in stats, stats
    assert _rate(out) == WIDEBAND[codec]
    assert_tone(out, 440)


@pytest.mark.parametrize("codec", sorted(WIDEBAND))
def test_we_call_baresip_wideband(tmp_path: Path, tones: tuple[Path, Path], codec: str) -> None:
    mic, ours = tones
    out = tmp_path / "call.wav"
    with Baresip("bob", duration=30, record=True, audio=mic, codecs=[codec]) as bob:
        # We offer opus, G722, PCMU, PCMA; baresip has only `codec`, so the answer names it alone.
        run = sip_call(bob.uri, "--play", str(ours), "--record", str(out), hangup_after=3.0)
        assert run.returncode == 0, run.explain()
        bob.wait_for(TERMINATED, timeout=10)
        heard = bob.recordings("dec")
        assert len(heard) == 1, bob.log()
        assert_tone(heard[0], 1000)
        assert re.search(rf"audio: Set audio encoder: {codec} ", bob.log()), bob.log()[-3000:]
        assert "audio codec not found" not in bob.log()
    assert _rate(out) == WIDEBAND[codec]
    assert_tone(out, 440)
