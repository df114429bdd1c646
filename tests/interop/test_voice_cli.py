"""Our `sip call` to our `sip answer` with media: over UDP (plain RTP) and over TLS (RTP/SAVP, SDES keys
made per call by each side), each side playing its own tone and recording the other's. Both prefer
Opus, so the call runs Opus at 48 kHz (the G.711 interop is baresip's and SIPp's).

Also `--echo`: what we send comes back.
"""

from __future__ import annotations

import re
import wave
from pathlib import Path

import pytest

from tests.interop.test_sip_cli import HOST, Answerer, sip_call
from tests.interop.test_voice_baresip import assert_tone, wait_output
from tests.peers import write_tone_wav

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("kind", ["udp", "tls"])
def test_call_to_our_answerer_tones_both_ways(
    kind: str, tmp_path: Path, dev_cert: tuple[Path, Path]
) -> None:
    cert, _ = dev_cert
    low = write_tone_wav(tmp_path / "440.wav", seconds=2.0)
    high = write_tone_wav(tmp_path / "1000.wav", seconds=2.0, freq=1000, rate=16000)
    heard_by_answer, heard_by_call = tmp_path / "a.wav", tmp_path / "c.wav"
    extra = ["--play", str(high), "--record", str(heard_by_answer)]
    tls = dev_cert if kind == "tls" else None
    with Answerer(f"{kind}:{HOST}:0", tls=tls, verbose=True, extra=extra) as answerer:
        args = ["--play", str(low), "--record", str(heard_by_call)]
        if kind == "tls":
            args += ["--tls-ca", str(cert)]
        run = sip_call(answerer.uri(kind), *args, hangup_after=2.0)
        assert run.returncode == 0, run.explain()
        wait_output(answerer, r"^media ended ")
    srtp = "True" if kind == "tls" else "False"
    # Both sides prefer Opus (MediaConfig default opus > G722 > PCMU > PCMA): it wins, and the
    # WAV ends run at its 48 kHz sample rate.
    assert re.search(rf"^media \S+ opus port \d+ srtp {srtp}$", answerer.output(), re.M)
    for heard in (heard_by_answer, heard_by_call):
        with wave.open(str(heard), "rb") as wav:
            assert wav.getframerate() == 48000
    assert_tone(heard_by_answer, 440)
    assert_tone(heard_by_call, 1000)


def test_echo(tmp_path: Path) -> None:
    low = write_tone_wav(tmp_path / "440.wav", seconds=2.0)
    back = tmp_path / "back.wav"
    with Answerer(f"udp:{HOST}:0", extra=["--echo"]) as answerer:
        run = sip_call(
            answerer.uri("udp"), "--play", str(low), "--record", str(back), hangup_after=2.0
        )
        assert run.returncode == 0, run.explain()
    assert_tone(back, 440)
