"""serve warns once at start when evidence links (bearer URLs) would travel over plain HTTP off-host."""

from __future__ import annotations

import logging

import pytest

from ifescalate.app import _warn_if_links_travel_in_clear


@pytest.mark.parametrize(
    ("url", "warns"),
    [
        ("https://escalate.example.org", False),
        ("http://127.0.0.1:8080", False),
        ("http://[::1]:8080", False),
        ("http://localhost:8080", False),
        ("http://escalate.example.org", True),
        ("http://192.0.2.10:8080", True),
        ("http://[2001:db8::1]:8080", True),
    ],
)
def test_plain_http_links_off_host_are_warned_about(
    url: str, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ifescalate.app"):
        _warn_if_links_travel_in_clear(url)
    warned = [r for r in caplog.records if "bearer credentials" in r.getMessage()]
    assert bool(warned) is warns
