"""Fixtures for tests against real peers. These never skip: scripts/bootstrap installs every peer, so a
missing one is a broken machine and the tests say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers import require_binary, write_tone_wav

PEER_BINARIES = ("sipp", "kamailio", "baresip", "stunnel", "openssl")


@pytest.fixture(scope="session", autouse=True)
def peers_installed() -> dict[str, str]:
    """Fail every interop test at once, with the install hint, when a peer binary is missing."""
    return {name: require_binary(name) for name in PEER_BINARIES}


@pytest.fixture(scope="session")
def tone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20 s 440 Hz 8 kHz mono tone to use as a microphone."""
    return write_tone_wav(tmp_path_factory.mktemp("audio") / "tone-440.wav", seconds=20.0)
