"""Evidence settings (config.py ``evidence:`` and ``api.public_url``) as a user writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ifescalate.config import ConfigError, load_settings


def test_defaults_file_and_environment(tmp_path: Path) -> None:
    defaults = load_settings(env={})
    assert defaults.api.public_url is None
    ev = defaults.evidence
    assert (ev.max_bytes, ev.link_ttl, ev.max_link_ttl, ev.sip_links) == (
        10485760,
        900.0,
        3600.0,
        4,
    )
    path = tmp_path / "c.yaml"
    path.write_text(
        "api: {public_url: 'https://escalate.example.org'}\n"
        "evidence: {link_ttl: 60, max_bytes: 1000, sip_links: 0}\n"
    )
    s = load_settings(str(path), env={})
    assert s.api.public_url == "https://escalate.example.org"
    assert (s.evidence.link_ttl, s.evidence.max_bytes, s.evidence.sip_links) == (60, 1000, 0)
    env = load_settings(str(path), env={"IFESCALATE_API_PUBLIC_URL": "https://other.example"})
    assert env.api.public_url == "https://other.example"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("evidence: {link_tll: 60}\n", "unknown setting 'link_tll'"),
        ("evidence: {max_bytes: big}\n", "expected int"),
        ("evidence: 5\n", "'evidence' must be a mapping"),
    ],
)
def test_mistakes_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(str(path), env={})
