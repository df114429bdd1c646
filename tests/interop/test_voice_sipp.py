"""SIPp plays recorded RTP at `sip answer`: the stock `uac_pcap` scenario sends 8 s of G.711 A-law
(`pcap/g711a.pcap`) and then an RFC 4733 key press (`pcap/dtmf_2833_1.pcap`) before its BYE.

Our answerer must answer PCMA (the offer lists 8 and 101), latch to SIPp's media port, record audio
that is not silence, and print the digit "1" exactly once.
"""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.interop.test_sip_cli import HOST, Answerer
from tests.interop.test_voice_baresip import wait_output
from tests.peers import free_port, run_sipp

pytestmark = pytest.mark.interop

PCAPS = Path("/usr/share/sip-tester")


def test_sipp_pcap_audio_and_dtmf_into_sip_answer(tmp_path: Path) -> None:
    assert (PCAPS / "g711a.pcap").exists() and (PCAPS / "dtmf_2833_1.pcap").exists()
    # uac_pcap names its files relative to the working directory: pcap/g711a.pcap.
    (tmp_path / "pcap").symlink_to(PCAPS)
    out = tmp_path / "answer.wav"
    with Answerer(f"udp:{HOST}:0", verbose=True, extra=["--record", str(out)]) as answerer:
        result = run_sipp(
            [
                "-sn", "uac_pcap", f"{HOST}:{answerer.port('udp')}", "-i", HOST,
                "-p", str(free_port("udp")), "-m", "1", "-recv_timeout", "20000",
            ],
            timeout=60,
            cwd=tmp_path,
        )  # fmt: skip
        assert result.ok, result.explain()
        stats = wait_output(answerer, r"^media ended (.*)$").group(1)
    output = answerer.output()
    assert re.search(r"^media \S+ PCMA port \d+ srtp False$", output, re.M), output
    assert re.findall(r"^dtmf (\S+) call-id", output, re.M) == ["1"], output
    assert "'dropped': 0" in stats, stats
    with wave.open(str(out), "rb") as wav:
        assert wav.getframerate() == 8000 and wav.getnchannels() == 1
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert len(samples) > 8000 * 5, f"only {len(samples) / 8000:.1f} s recorded"
    level = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    assert level > 300, f"recording is (nearly) silent: RMS {level:.0f}"
