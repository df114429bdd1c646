"""RFC 3264 offer/answer for audio: offers, answers, negotiate, re-offers and SDES (RFC 4568).

Byte-exact fixtures: golden offers/answers built here and the answer to the RFC 4475 ``sdp01`` body.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ifescalate.sip import offer_answer, sdp
from ifescalate.sip.errors import SipError, SipParseError
from ifescalate.sip.offer_answer import (
    NotAcceptableHere,
    build_answer,
    build_offer,
    negotiate,
    next_version,
    with_direction,
)
from ifescalate.sip.sdp import (
    G729,
    OPUS,
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Attribute,
    Codec,
    Connection,
    CryptoAttribute,
    Direction,
    Origin,
    SessionDescription,
    parse_sdp,
)

RFC4475 = Path("/work/shared/conformance/rfc4475")
KEY1 = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
KEY2 = "inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj"
KEY_ANSWER = "inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj"


def _body(name: str) -> bytes:
    message = (RFC4475 / name).read_bytes()
    return message.split(b"\r\n\r\n", 1)[1]


def _crlf(text: str) -> bytes:
    return "".join(f"{line}\r\n" for line in text.strip().splitlines() if line).encode()


# ---------------------------------------------------------------------------------------------
# The sdp module re-exports the offer/answer names
# ---------------------------------------------------------------------------------------------


def test_sdp_re_exports_are_the_offer_answer_objects() -> None:
    for name in offer_answer.__all__:
        assert getattr(sdp, name) is getattr(offer_answer, name), name
        assert name in sdp.__all__
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = sdp.no_such_name


@pytest.mark.parametrize(
    "first",
    ["ifescalate.sip.offer_answer", "ifescalate.sip.sdp"],
)
def test_either_module_can_be_imported_first(first: str) -> None:
    # A fresh interpreter: here both modules are already loaded, so an import cycle would not show.
    code = f"import {first}; from ifescalate.sip.sdp import build_answer, NotAcceptableHere"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


# ---------------------------------------------------------------------------------------------
# RFC 4475 sdp01
# ---------------------------------------------------------------------------------------------


def test_answer_to_sdp01_accepts_audio_and_rejects_video_in_place() -> None:
    offer = parse_sdp(_body("sdp01.dat"))
    answer = build_answer(offer, address="192.0.2.77", port=30000, codecs=[PCMU], session_id=5)
    assert answer.to_bytes() == _crlf("""
v=0
o=- 5 5 IN IP4 192.0.2.77
s=-
c=IN IP4 192.0.2.77
t=0 0
m=audio 30000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:20
a=sendrecv
m=video 0 RTP/AVP 31
""")


# ---------------------------------------------------------------------------------------------
# Offers
# ---------------------------------------------------------------------------------------------


def _offer(**kwargs: object) -> SessionDescription:
    args: dict[str, object] = {
        "address": "192.0.2.10",
        "port": 40000,
        "codecs": [PCMU, PCMA, TELEPHONE_EVENT],
        "session_id": 1000,
        "session_version": 1000,
    }
    args.update(kwargs)
    return build_offer(**args)  # type: ignore[arg-type]


def test_build_offer_golden_bytes() -> None:
    assert _offer().to_bytes() == _crlf("""
v=0
o=- 1000 1000 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
""")


def test_build_offer_srtp_ipv6_mux_golden_bytes() -> None:
    crypto = [CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", (KEY1,))]
    offer = _offer(
        address="2001:db8::10",
        codecs=[OPUS, PCMU],
        crypto=crypto,
        profile="RTP/SAVP",
        ptime=None,
        rtcp_mux=True,
        direction="sendonly",
    )
    assert offer.to_bytes() == _crlf(f"""
v=0
o=- 1000 1000 IN IP6 2001:db8::10
s=-
c=IN IP6 2001:db8::10
t=0 0
m=audio 40000 RTP/SAVP 111 0
a=rtpmap:111 opus/48000/2
a=rtpmap:0 PCMU/8000
a=sendonly
a=rtcp-mux
a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY1}
""")
    assert parse_sdp(offer.to_bytes()) == offer


def test_build_offer_rejects_duplicate_payload_types() -> None:
    with pytest.raises(ValueError, match="distinct payload types"):
        _offer(codecs=[PCMU, replace(PCMA, payload_type=0)])
    with pytest.raises(ValueError):
        _offer(codecs=[])


def test_fqdn_address_is_ip4() -> None:
    assert _offer(address="media.example.com").connection == Connection("media.example.com")


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


def _answer(offer: SessionDescription, **kwargs: object) -> SessionDescription:
    args: dict[str, object] = {
        "address": "192.0.2.20",
        "port": 50000,
        "codecs": [PCMU, PCMA, TELEPHONE_EVENT],
        "session_id": 2000,
    }
    args.update(kwargs)
    return build_answer(offer, **args)  # type: ignore[arg-type]


def _peer_offer(media: str, *, session: str = "", conn: str = "c=IN IP4 198.51.100.7") -> bytes:
    return _crlf(f"""
v=0
o=peer 77 78 IN IP4 198.51.100.7
s=call
{conn}
t=0 0
{session}
{media}
""")


def test_answer_pcmu_only() -> None:
    offer = parse_sdp(_peer_offer("m=audio 6000 RTP/AVP 0"))
    answer = _answer(offer)
    assert answer.media[0].codecs == (PCMU,)
    assert answer.origin == Origin("-", 2000, 2000, "IN", "IP4", "192.0.2.20")
    view = negotiate(offer, answer)
    assert (view.remote_address, view.remote_port) == ("192.0.2.20", 50000)
    assert view.codec == PCMU
    assert view.telephone_event is None


def test_answer_pcma_preferred_by_offerer() -> None:
    offer = parse_sdp(
        _peer_offer("m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000")
    )
    answer = _answer(offer)
    assert answer.media[0].formats == ("8", "0", "101")
    assert negotiate(offer, answer).codec == PCMA


def test_answer_own_preference_when_asked() -> None:
    offer = parse_sdp(_peer_offer("m=audio 6000 RTP/AVP 0 8"))
    answer = _answer(offer, codecs=[PCMA, PCMU], prefer_offer_order=False)
    assert answer.media[0].formats == ("8", "0")
    assert negotiate(offer, answer).codec == PCMA
    assert negotiate(offer, _answer(offer, codecs=[PCMA, PCMU])).codec == PCMU


def test_no_common_codec_is_488() -> None:
    offer = parse_sdp(
        _peer_offer("m=audio 6000 RTP/AVP 18 101\r\na=rtpmap:101 telephone-event/8000")
    )
    with pytest.raises(NotAcceptableHere, match="no common audio codec") as info:
        _answer(offer)
    assert isinstance(info.value, SipError)
    assert (info.value.status, info.value.reason) == (488, "Not Acceptable Here")


def test_offer_without_audio_is_488() -> None:
    offer = parse_sdp(_peer_offer("m=video 6000 RTP/AVP 31"))
    with pytest.raises(NotAcceptableHere, match=r"m-line 0 \(video\): not audio"):
        _answer(offer)


def test_telephone_event_kept_with_offerer_payload_type() -> None:
    offer = parse_sdp(
        _peer_offer(
            "m=audio 6000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15"
        )
    )
    answer = _answer(offer)
    assert answer.media[0].formats == ("0", "96")
    assert answer.media[0].codecs[1] == Codec(96, "telephone-event", 8000, 1, "0-16")
    assert negotiate(offer, answer).telephone_event == 96
    assert negotiate(offer, answer, role="answerer").telephone_event == 96
    # Without it on our side it is left out of the answer.
    assert _answer(offer, codecs=[PCMU]).media[0].formats == ("0",)
    assert negotiate(offer, _answer(offer, codecs=[PCMU])).telephone_event is None


def test_answer_keeps_offered_dynamic_numbers_and_echoes_fmtp() -> None:
    offer = parse_sdp(
        _peer_offer(
            "m=audio 6000 RTP/AVP 18 120\r\na=fmtp:18 annexb=no\r\na=rtpmap:120 OPUS/48000/2"
        )
    )
    answer = _answer(offer, codecs=[OPUS, G729])
    assert answer.media[0].codecs == (
        Codec(18, "G729", 8000, 1, "annexb=no"),
        Codec(120, "OPUS", 48000, 2),
    )


def test_video_rejected_with_port_zero_in_same_position() -> None:
    offer = parse_sdp(
        _peer_offer(
            "m=video 7000 RTP/AVP 31\r\n"
            "m=audio 6000 RTP/AVP 0\r\n"
            "m=audio 6002 RTP/AVP 0\r\n"
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel"
        )
    )
    answer = _answer(offer)
    assert [(m.media, m.port, m.formats) for m in answer.media] == [
        ("video", 0, ("31",)),
        ("audio", 50000, ("0",)),
        ("audio", 0, ("0",)),
        ("application", 0, ("webrtc-datachannel",)),
    ]
    assert negotiate(offer, answer).index == 1


def test_unsupported_profile_and_disabled_stream_rejected() -> None:
    offer = parse_sdp(_peer_offer("m=audio 0 RTP/AVP 0\r\nm=audio 6000 RTP/AVPF 0"))
    with pytest.raises(NotAcceptableHere, match=r"disabled in the offer.*RTP/AVPF not supported"):
        _answer(offer)


@pytest.mark.parametrize(
    ("offered", "local", "answered", "offerer_view", "answerer_view"),
    [
        ("sendrecv", "sendrecv", "sendrecv", "sendrecv", "sendrecv"),
        ("sendonly", "sendrecv", "recvonly", "sendonly", "recvonly"),
        ("recvonly", "sendrecv", "sendonly", "recvonly", "sendonly"),
        ("inactive", "sendrecv", "inactive", "inactive", "inactive"),
        ("sendrecv", "recvonly", "recvonly", "sendonly", "recvonly"),
        ("sendrecv", "sendonly", "sendonly", "recvonly", "sendonly"),
        ("sendonly", "sendonly", "inactive", "inactive", "inactive"),
        ("recvonly", "recvonly", "inactive", "inactive", "inactive"),
        ("sendrecv", "inactive", "inactive", "inactive", "inactive"),
    ],
)
def test_direction_mapping(
    offered: Direction,
    local: Direction,
    answered: Direction,
    offerer_view: Direction,
    answerer_view: Direction,
) -> None:
    offer = _offer(direction=offered)
    answer = _answer(offer, direction=local)
    assert answer.media[0].direction == answered
    assert negotiate(offer, answer).direction == offerer_view
    assert negotiate(offer, answer, role="answerer").direction == answerer_view


def test_session_level_direction_is_inherited() -> None:
    offer = parse_sdp(_peer_offer("m=audio 6000 RTP/AVP 0", session="a=sendonly"))
    assert _answer(offer).media[0].direction == "recvonly"


def test_ipv6_offer_and_answer() -> None:
    offer = parse_sdp(_peer_offer("m=audio 6000 RTP/AVP 0\r\nc=IN IP6 2001:db8::7", conn="b=AS:64"))
    answer = _answer(offer, address="2001:db8::20")
    assert answer.connection == Connection("2001:db8::20", "IP6")
    assert answer.origin.addrtype == "IP6"
    view = negotiate(offer, answer, role="answerer")
    assert (view.remote_address, view.remote_port, view.remote_rtcp_port) == (
        "2001:db8::7",
        6000,
        6001,
    )
    assert negotiate(offer, answer).remote_address == "2001:db8::20"


def test_rfc2543_hold_with_null_address() -> None:
    offer = parse_sdp(_peer_offer("m=audio 6000 RTP/AVP 0", conn="c=IN IP4 0.0.0.0"))
    answer = _answer(offer)
    # RFC 3264 §8.4: send nothing to 0.0.0.0, so the answer only receives.
    assert answer.media[0].direction == "recvonly"
    view = negotiate(offer, answer, role="answerer")
    assert view.direction == "recvonly"
    assert not view.sends and view.receives


def test_hold_and_resume_re_offer() -> None:
    offer = _offer()
    hold = next_version(with_direction(offer, "sendonly"))
    assert hold.origin.session_version == 1001
    assert hold.origin.session_id == 1000
    assert hold.media[0].get_all("sendonly") == [""]
    assert hold.media[0].get("sendrecv") is None
    answer = _answer(hold, session_version=2001)
    assert answer.origin.session_version == 2001
    assert answer.media[0].direction == "recvonly"
    assert negotiate(hold, answer).direction == "sendonly"
    resume = next_version(with_direction(hold, "sendrecv"))
    assert resume.origin.session_version == 1002
    assert negotiate(resume, _answer(resume)).direction == "sendrecv"


def test_with_direction_drops_session_level_direction_unless_one_stream() -> None:
    offer = parse_sdp(
        _peer_offer("m=audio 6000 RTP/AVP 0\r\nm=audio 6002 RTP/AVP 0", session="a=recvonly")
    )
    one = with_direction(offer, "inactive", index=1)
    assert (one.media_direction(0), one.media_direction(1)) == ("recvonly", "inactive")
    both = with_direction(offer, "sendrecv")
    assert both.direction is None
    assert both.media_direction(0) == both.media_direction(1) == "sendrecv"


def test_answer_golden_bytes_with_telephone_event() -> None:
    offer = parse_sdp(
        _peer_offer(
            "m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16"
        )
    )
    assert _answer(offer, ptime=None).to_bytes() == _crlf("""
v=0
o=- 2000 2000 IN IP4 192.0.2.20
s=-
c=IN IP4 192.0.2.20
t=0 0
m=audio 50000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv
""")


# ---------------------------------------------------------------------------------------------
# negotiate: the views both sides act on
# ---------------------------------------------------------------------------------------------


def test_negotiate_rtcp_port_forms() -> None:
    offer = _offer()
    plain = negotiate(offer, _answer(offer))
    assert (plain.remote_rtcp_address, plain.remote_rtcp_port, plain.rtcp_mux) == (
        "192.0.2.20",
        50000 + 1,
        False,
    )
    explicit = parse_sdp(bytes(_answer(offer)) + b"a=rtcp:50009 IN IP4 192.0.2.99\r\n")
    view = negotiate(offer, explicit)
    assert (view.remote_rtcp_address, view.remote_rtcp_port) == ("192.0.2.99", 50009)


def test_negotiate_rtcp_mux_only_when_both_sides_say_so() -> None:
    muxed = _offer(rtcp_mux=True)
    answer = _answer(muxed, rtcp_mux=True)
    assert answer.media[0].rtcp_mux
    view = negotiate(muxed, answer)
    assert (view.rtcp_mux, view.remote_rtcp_port) == (True, 50000)
    # RFC 5761 §5.1.1: no a=rtcp-mux in an answer to an offer without it.
    assert not _answer(_offer(), rtcp_mux=True).media[0].rtcp_mux


def test_negotiate_ptime_and_default() -> None:
    offer = _offer(ptime=30)
    assert negotiate(offer, _answer(offer, ptime=None)).ptime == 20
    assert negotiate(offer, _answer(offer, ptime=40)).ptime == 40
    assert negotiate(offer, _answer(offer), role="answerer").ptime == 30


def test_negotiate_uses_peer_payload_numbers() -> None:
    # A (non-conforming) answer that renumbers telephone-event: each side sends with the number
    # its peer listed.
    offer = _offer(codecs=[PCMU, replace(TELEPHONE_EVENT, payload_type=96)])
    answer = parse_sdp(
        _peer_offer("m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000")
    )
    assert negotiate(offer, answer).telephone_event == 101
    assert negotiate(offer, answer, role="answerer").telephone_event == 96


def test_negotiate_codecs_list_and_answerer_view() -> None:
    offer = _offer(codecs=[PCMA, PCMU, TELEPHONE_EVENT])
    answer = _answer(offer)
    view = negotiate(offer, answer, role="answerer")
    assert view.codecs == (PCMA, PCMU, TELEPHONE_EVENT)
    assert view.codec == PCMA
    assert (view.remote_address, view.remote_port) == ("192.0.2.10", 40000)
    assert view.profile == "RTP/AVP"
    assert view.local_crypto is None and view.remote_crypto is None


def test_negotiate_rejects_bad_answers() -> None:
    offer = _offer()
    answer = _answer(offer)
    with pytest.raises(NotAcceptableHere, match="m-lines"):
        negotiate(offer, replace(answer, media=answer.media * 2))
    rejected = replace(answer, media=(replace(answer.media[0], port=0),))
    with pytest.raises(NotAcceptableHere, match="accepted no audio"):
        negotiate(offer, rejected)
    g729_only = parse_sdp(_peer_offer("m=audio 6000 RTP/AVP 18"))
    with pytest.raises(NotAcceptableHere, match="no common audio codec"):
        negotiate(offer, g729_only)
    no_conn = replace(answer, connection=None)
    with pytest.raises(SipParseError, match="no c= line"):
        negotiate(offer, no_conn)


# ---------------------------------------------------------------------------------------------
# SRTP (RFC 4568 SDES)
# ---------------------------------------------------------------------------------------------

OFFERED_CRYPTO = [
    CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", (KEY1,)),
    CryptoAttribute(2, "AES_CM_128_HMAC_SHA1_32", (KEY2,)),
]


def test_srtp_answer_and_negotiation() -> None:
    offer = _offer(crypto=OFFERED_CRYPTO, profile="RTP/SAVP")
    ours = CryptoAttribute(2, "AES_CM_128_HMAC_SHA1_32", (KEY_ANSWER,))
    answer = _answer(offer, crypto_answer=ours)
    assert answer.media[0].proto == "RTP/SAVP"
    assert answer.media[0].get_all("crypto") == [f"2 AES_CM_128_HMAC_SHA1_32 {KEY_ANSWER}"]
    offerer = negotiate(offer, answer)
    assert (offerer.local_crypto, offerer.remote_crypto) == (OFFERED_CRYPTO[1], ours)
    answerer = negotiate(offer, answer, role="answerer")
    assert (answerer.local_crypto, answerer.remote_crypto) == (ours, OFFERED_CRYPTO[1])
    assert answerer.profile == "RTP/SAVP"


def test_srtp_offer_without_crypto_answer_is_488() -> None:
    offer = _offer(crypto=OFFERED_CRYPTO, profile="RTP/SAVP")
    with pytest.raises(NotAcceptableHere, match="no crypto answer"):
        _answer(offer)
    wrong = CryptoAttribute(2, "AES_CM_128_HMAC_SHA1_80", (KEY_ANSWER,))
    with pytest.raises(NotAcceptableHere, match="matches no offered crypto"):
        _answer(offer, crypto_answer=wrong)


def test_plain_offer_ignores_crypto_answer() -> None:
    answer = _answer(_offer(), crypto_answer=OFFERED_CRYPTO[0])
    assert answer.media[0].proto == "RTP/AVP"
    assert answer.media[0].crypto == ()


def test_srtp_answer_with_bad_crypto_lines() -> None:
    offer = _offer(crypto=OFFERED_CRYPTO, profile="RTP/SAVP")
    answer = _answer(offer, crypto_answer=CryptoAttribute(1, OFFERED_CRYPTO[0].suite, (KEY2,)))
    two = replace(
        answer.media[0], attributes=(*answer.media[0].attributes, Attribute("crypto", "3 X k:v"))
    )
    with pytest.raises(NotAcceptableHere, match="exactly one crypto line, got 2"):
        negotiate(offer, replace(answer, media=(two,)))
    unknown_tag = [a for a in answer.media[0].attributes if a.name != "crypto"]
    bad = replace(answer.media[0], attributes=(*unknown_tag, Attribute("crypto", f"9 S {KEY2}")))
    with pytest.raises(NotAcceptableHere, match="tag 9 does not match"):
        negotiate(offer, replace(answer, media=(bad,)))
