"""Voice both ways with baresip (a real softphone): plain RTP over UDP, and SDES-SRTP over TLS.

Each side plays its own tone (baresip: 440 Hz through `aufile`; us: 1000 Hz with `--play`, 16 kHz to
exercise resampling) and records what it hears (baresip: `sndfile`; us: `--record`). The tone each side
sent must be in the other's recording: FFT peak within a few Hz, level within ~3 dB of what was sent.
"""

from __future__ import annotations

import re
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.interop.test_sip_cli import HOST, Answerer, sip_call
from tests.peers import Baresip, write_tone_wav
from tests.peers.audio import read_wav_samples
from tests.peers.baresip import TERMINATED

pytestmark = pytest.mark.interop

SENT_RMS = 8000 / np.sqrt(2)  # write_tone_wav's default amplitude 8000


def analyse(path: Path, *, skip: float = 0.3) -> tuple[float, float, float]:
    """(FFT peak Hz, RMS, seconds) of a 16-bit WAV, without its first ``skip`` seconds.

    Channels are averaged: baresip records Opus (opus/48000/2, RFC 7587 §7) as two channels.
    """
    import wave

    with wave.open(str(path), "rb") as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
    interleaved = np.asarray(read_wav_samples(path), dtype=np.float64)
    samples = interleaved[: len(interleaved) // channels * channels].reshape(-1, channels).mean(1)
    body = samples[int(skip * rate) :]
    assert len(body) > rate // 2, f"{path}: only {len(samples) / rate:.2f} s recorded"
    spectrum = np.abs(np.fft.rfft(body * np.hanning(len(body))))
    peak = float(np.fft.rfftfreq(len(body), 1 / rate)[int(np.argmax(spectrum))])
    return peak, float(np.sqrt(np.mean(body**2))), len(samples) / rate


def assert_tone(path: Path, freq: float) -> None:
    peak, level, seconds = analyse(path)
    assert abs(peak - freq) < 5, f"{path}: peak {peak:.1f} Hz, expected {freq} ({seconds:.1f} s)"
    # Within 3 dB of the level sent (G.711 keeps a sine within a few percent).
    assert SENT_RMS / 1.41 < level < SENT_RMS * 1.41, f"{path}: RMS {level:.0f}"


def wait_output(answerer: Answerer, pattern: str, timeout: float = 15.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while (found := re.search(pattern, answerer.output(), re.M)) is None:
        assert time.monotonic() < deadline, f"{pattern!r} not printed\n{answerer.output()}"
        time.sleep(0.05)
    return found


@pytest.fixture()
def tones(tmp_path: Path) -> tuple[Path, Path]:
    """(baresip's 440 Hz 8 kHz microphone, our 1000 Hz 16 kHz --play file)."""
    mic = write_tone_wav(tmp_path / "tone-440.wav", seconds=40.0)
    ours = write_tone_wav(tmp_path / "tone-1000.wav", seconds=5.0, freq=1000, rate=16000)
    return mic, ours


def test_baresip_calls_our_answerer_tones_both_ways(
    tmp_path: Path, tones: tuple[Path, Path]
) -> None:
    mic, ours = tones
    out = tmp_path / "answer.wav"
    extra = ["--record", str(out), "--play", str(ours)]
    with Answerer(f"udp:{HOST}:0", verbose=True, extra=extra) as answerer:
        with Baresip(
            "alice", dial=answerer.uri("udp"), duration=4, record=True, audio=mic
        ) as alice:
            alice.wait_established(timeout=10)
            alice.wait_for(TERMINATED, timeout=15)
            wait_output(answerer, r"^media ended ")
            heard = alice.recordings("dec")
            assert len(heard) == 1, alice.log()
            assert_tone(heard[0], 1000)
        stats = wait_output(answerer, r"^media ended (.*)$").group(1)
    assert re.search(r"^media \S+ PCMU port \d+ srtp False$", answerer.output(), re.M)
    assert "'lost': 0" in stats, stats
    assert_tone(out, 440)


def test_we_call_baresip_tones_both_ways(tmp_path: Path, tones: tuple[Path, Path]) -> None:
    mic, ours = tones
    out = tmp_path / "call.wav"
    with Baresip("bob", duration=30, record=True, audio=mic) as bob:
        run = sip_call(bob.uri, "--play", str(ours), "--record", str(out), hangup_after=3.0)
        assert run.returncode == 0, run.explain()
        bob.wait_for(TERMINATED, timeout=10)
        heard = bob.recordings("dec")
        assert len(heard) == 1, bob.log()
        assert_tone(heard[0], 1000)
    # We offer opus, G722, PCMU, PCMA; baresip here loads only g711 (audio_codecs=PCMU,PCMA) and
    # answers PCMU: our recording runs at the negotiated codec's 8 kHz.
    with wave.open(str(out), "rb") as wav:
        assert wav.getframerate() == 8000
    assert_tone(out, 440)


def test_we_call_baresip_over_tls_with_srtp(
    tmp_path: Path, tones: tuple[Path, Path], dev_cert: tuple[Path, Path]
) -> None:
    # Our INVITE over TLS offers RTP/SAVP with an SDES key; baresip demands SRTP (srtp-mand).
    mic, ours = tones
    cert, _ = dev_cert
    secure = {"tls": dev_cert, "ca": cert, "srtp": True, "record": True, "audio": mic}
    out = tmp_path / "call-srtp.wav"
    with Baresip("bob", duration=30, transport="tls", sip_trace=True, **secure) as bob:  # type: ignore[arg-type]
        run = sip_call(
            bob.uri, "--tls-ca", str(cert), "--play", str(ours), "--record", str(out),
            hangup_after=3.0,
        )  # fmt: skip
        assert run.returncode == 0, run.explain()
        bob.wait_for(TERMINATED, timeout=10)
        log = bob.log()
        assert re.search(r"^m=audio \d+ RTP/SAVP ", log, re.M), log[-3000:]
        assert re.search(r"^a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:", log, re.M)
        assert "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)" in log
        assert_tone(bob.recordings("dec")[0], 1000)
    assert_tone(out, 440)


def test_baresip_calls_our_tls_answerer_with_srtp(
    tmp_path: Path, tones: tuple[Path, Path], dev_cert: tuple[Path, Path]
) -> None:
    mic, ours = tones
    cert, _ = dev_cert
    secure = {"tls": dev_cert, "ca": cert, "srtp": True, "record": True, "audio": mic}
    out = tmp_path / "answer-srtp.wav"
    extra = ["--record", str(out), "--play", str(ours)]
    with Answerer(f"tls:{HOST}:0", tls=dev_cert, verbose=True, extra=extra) as answerer:
        uri = f"sip:bob@{HOST}:{answerer.port('tls')};transport=tls"
        with Baresip("alice", dial=uri, duration=4, **secure) as alice:  # type: ignore[arg-type]
            alice.wait_established(timeout=10)
            alice.wait_for(TERMINATED, timeout=15)
            wait_output(answerer, r"^media ended ")
            assert_tone(alice.recordings("dec")[0], 1000)
    assert re.search(r"^media \S+ PCMU port \d+ srtp True$", answerer.output(), re.M)
    assert_tone(out, 440)
