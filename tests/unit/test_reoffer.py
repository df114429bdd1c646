"""sip/reoffer: answering a re-offer in a running session (RFC 3264 §8), and the RFC 5761 answer rule."""

from __future__ import annotations

import pytest

from ifescalate.sip.reoffer import answer_reoffer
from ifescalate.sip.sdp import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Codec,
    NotAcceptableHere,
    build_answer,
    build_offer,
    negotiate,
    parse_sdp,
)

OURS = (PCMU, PCMA, TELEPHONE_EVENT)
KEY_A = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyAoc2VuZGVy"
KEY_B = "inline:PS1uQCVeeCFCanVmcHMhSC8xTCZ6b0xAdXZjYVFBYWl3WWs1WCg1"


def _offer(direction: str = "sendrecv", *, host: str = "192.0.2.1", version: int = 1,
           codecs: str = "0 8 101", extra: str = "") -> bytes:  # fmt: skip
    return (
        f"v=0\r\no=peer 7 {version} IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio 30000 RTP/AVP {codecs}\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a={direction}\r\n{extra}"
    ).encode()


def _start(offer: bytes = b"", codec: Codec = PCMU):  # type: ignore[no-untyped-def]
    # Like MediaSession: the first answer names the one running codec plus telephone-event.
    parsed = parse_sdp(offer or _offer())
    answer = build_answer(
        parsed, address="198.51.100.2", port=40000, codecs=(codec, TELEPHONE_EVENT), session_id=9
    )
    return answer, negotiate(parsed, answer, role="answerer")


@pytest.mark.parametrize(
    ("direction", "host", "ours"),
    [
        ("sendonly", "192.0.2.1", "recvonly"),  # §8.4 hold
        ("inactive", "192.0.2.1", "inactive"),
        ("recvonly", "192.0.2.1", "sendonly"),
        ("sendrecv", "0.0.0.0", "recvonly"),  # RFC 2543 hold: send nothing to that peer
        ("sendrecv", "192.0.2.1", "sendrecv"),
    ],
)
def test_reoffer_direction_is_answered_per_rfc3264(direction: str, host: str, ours: str) -> None:
    previous, current = _start()
    result = answer_reoffer(
        parse_sdp(_offer(direction, host=host, version=2)),
        previous=previous,
        current=current,
        supported=OURS,
    )
    media = result.answer.media[0]
    assert media.direction == ours and result.negotiated.direction == ours
    # Same session, port and codec; the version moves only when the answer changed (§8).
    assert result.answer.origin.session_id == 9 and media.port == 40000
    assert [c.name for c in media.codecs] == ["PCMU", "telephone-event"]
    changed = ours != "sendrecv"
    assert result.changed is changed
    assert result.answer.origin.session_version == 9 + changed
    assert result.answer.connection is not None
    assert result.answer.connection.host == "198.51.100.2"


def test_reoffer_answers_with_the_running_codec_only() -> None:
    previous, current = _start(_offer(codecs="8 0 101"), PCMA)  # PCMA runs
    result = answer_reoffer(
        parse_sdp(_offer("sendonly", codecs="0 8 101")),
        previous=previous,
        current=current,
        supported=OURS,
    )
    assert [c.name for c in result.answer.media[0].codecs] == ["PCMA", "telephone-event"]
    assert result.negotiated.codec.name == "PCMA"


def test_reoffer_dropping_the_running_codec_is_488() -> None:
    previous, current = _start()
    with pytest.raises(NotAcceptableHere, match="drops the running codec PCMU/8000"):
        answer_reoffer(
            parse_sdp(_offer(codecs="8 101")), previous=previous, current=current, supported=OURS
        )


def test_reoffer_keeps_the_srtp_key_and_refuses_a_new_one() -> None:
    crypto = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY_A}\r\n"
    offer = parse_sdp(_offer(extra=crypto).replace(b"RTP/AVP", b"RTP/SAVP"))
    from ifescalate.sip.sdp import CryptoAttribute

    ours = CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 {KEY_B}")
    answer = build_answer(
        offer, address="198.51.100.2", port=40000, codecs=OURS, session_id=9, crypto_answer=ours
    )
    current = negotiate(offer, answer, role="answerer")
    # The peer re-offers its key under another tag: we answer that tag with our same key.
    again = f"a=crypto:4 AES_CM_128_HMAC_SHA1_80 {KEY_A}\r\n"
    reoffer = parse_sdp(_offer("sendonly", extra=again).replace(b"RTP/AVP", b"RTP/SAVP"))
    result = answer_reoffer(reoffer, previous=answer, current=current, supported=OURS)
    (line,) = result.answer.media[0].crypto
    assert line.tag == 4 and line.key_params == ours.key_params
    rekey = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY_B}\r\n"
    with pytest.raises(NotAcceptableHere, match="changes the SRTP key"):
        answer_reoffer(
            parse_sdp(_offer(extra=rekey).replace(b"RTP/AVP", b"RTP/SAVP")),
            previous=answer,
            current=current,
            supported=OURS,
        )
    with pytest.raises(NotAcceptableHere, match="changes the profile RTP/SAVP to RTP/AVP"):
        answer_reoffer(parse_sdp(_offer()), previous=answer, current=current, supported=OURS)


# -- RFC 5761 rtcp-mux in offer/answer -------------------------------------------------------------


def _mux_offer(pt: int) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        f"m=audio 30000 RTP/AVP {pt}\r\na=rtpmap:{pt} opus/48000/2\r\na=rtcp-mux\r\n"
    ).encode()


@pytest.mark.parametrize(("pt", "muxed"), [(111, True), (96, True), (72, False), (95, False)])
def test_rtcp_mux_is_accepted_unless_a_payload_type_collides_with_rtcp(
    pt: int, muxed: bool
) -> None:
    # RFC 5761 §4: payload types 64-95 would read as RTCP packet types 192-223 on a shared port.
    opus = Codec(111, "opus", 48000, 2)
    offer = parse_sdp(_mux_offer(pt))
    answer = build_answer(offer, address="198.51.100.2", port=40000, codecs=[opus], session_id=1,
                          rtcp_mux=True)  # fmt: skip
    assert answer.media[0].rtcp_mux is muxed
    nm = negotiate(offer, answer, role="answerer")
    assert nm.rtcp_mux is muxed
    # Muxed: RTCP goes to the RTP port; else to port + 1 (RFC 3550 §11).
    assert nm.remote_rtcp_port == (30000 if muxed else 30001)


def test_offered_rtcp_mux_falls_back_to_separate_ports_when_not_answered() -> None:
    offer = build_offer(address="198.51.100.2", port=40000, codecs=OURS, session_id=1,
                        session_version=1, rtcp_mux=True)  # fmt: skip
    assert offer.media[0].rtcp_mux
    plain = build_answer(offer, address="192.0.2.1", port=30000, codecs=OURS, session_id=2)
    nm = negotiate(offer, plain, role="offerer")
    assert not nm.rtcp_mux and nm.remote_rtcp_port == 30001
    muxed = build_answer(offer, address="192.0.2.1", port=30000, codecs=OURS, session_id=2,
                         rtcp_mux=True)  # fmt: skip
    nm = negotiate(offer, muxed, role="offerer")
    assert nm.rtcp_mux and nm.remote_rtcp_port == 30000
