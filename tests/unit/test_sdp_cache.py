"""AnswerCache gives byte-for-byte what build_answer gives, with a fresh o= per call."""

from __future__ import annotations

import pytest

from ifescalate.sip.errors import SipParseError
from ifescalate.sip.sdp import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    NotAcceptableHere,
    build_answer,
    parse_sdp,
)
from ifescalate.sip.sdp_cache import AnswerCache

OFFER = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
)
CODECS = [PCMU, PCMA, TELEPHONE_EVENT]


def expected(offer: bytes, sid: int, address: str = "10.0.0.1", port: int = 40000) -> bytes:
    return build_answer(
        parse_sdp(offer), address=address, port=port, codecs=CODECS, session_id=sid
    ).to_bytes()


def test_same_bytes_as_build_answer_for_each_session_id() -> None:
    cache = AnswerCache()
    for sid in (1, 4294967295, 77):
        got = cache.answer(OFFER, address="10.0.0.1", port=40000, codecs=CODECS, session_id=sid)
        assert got == expected(OFFER, sid)
    assert len(cache) == 1


def test_settings_are_part_of_the_key() -> None:
    cache = AnswerCache()
    a = cache.answer(OFFER, address="10.0.0.1", port=40000, codecs=CODECS, session_id=5)
    b = cache.answer(OFFER, address="10.0.0.2", port=40002, codecs=CODECS, session_id=5)
    assert a == expected(OFFER, 5)
    assert b == expected(OFFER, 5, "10.0.0.2", 40002)
    only_pcma = cache.answer(OFFER, address="10.0.0.1", port=40000, codecs=[PCMA], session_id=5)
    assert b"a=rtpmap:8 PCMA/8000" in only_pcma and b"PCMU" not in only_pcma
    assert len(cache) == 3


def test_different_offer_is_answered_on_its_own() -> None:
    cache = AnswerCache()
    cache.answer(OFFER, address="10.0.0.1", port=40000, codecs=CODECS, session_id=5)
    pcma_only = OFFER.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 8 101")
    got = cache.answer(pcma_only, address="10.0.0.1", port=40000, codecs=CODECS, session_id=6)
    assert got == expected(pcma_only, 6)


def test_errors_are_raised_every_time_and_never_cached() -> None:
    cache = AnswerCache()
    bad = OFFER.replace(b"o=user1 53655765", b"o=user1 x")
    video = OFFER.replace(b"m=audio", b"m=video")
    for _ in range(2):
        with pytest.raises(SipParseError):
            cache.answer(bad, address="10.0.0.1", port=40000, codecs=CODECS, session_id=1)
        with pytest.raises(NotAcceptableHere):
            cache.answer(video, address="10.0.0.1", port=40000, codecs=CODECS, session_id=1)
    assert len(cache) == 0


def test_bounded() -> None:
    cache = AnswerCache(maxsize=2)
    for port in (6000, 6002, 6004):
        offer = OFFER.replace(b"m=audio 6000", b"m=audio %d" % port)
        cache.answer(offer, address="10.0.0.1", port=40000, codecs=CODECS, session_id=1)
    assert len(cache) == 1
