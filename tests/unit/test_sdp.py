"""SDP (RFC 8866) parse/serialize and RFC 3264 offer/answer for audio.

Byte-exact fixtures: the SDP bodies of the RFC 4475 torture messages, a description using every
line type, and golden offers/answers built here.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ifescalate.sip.errors import SipError, SipParseError
from ifescalate.sip.sdp import (
    G729,
    OPUS,
    PCMA,
    PCMU,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT,
    Attribute,
    Codec,
    Connection,
    CryptoAttribute,
    CryptoKey,
    Direction,
    NotAcceptableHere,
    Origin,
    RtcpAttribute,
    SessionDescription,
    Timing,
    build_answer,
    build_offer,
    negotiate,
    next_version,
    parse_sdp,
    with_direction,
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
# RFC 4475 bodies
# ---------------------------------------------------------------------------------------------

RFC4475_SDP = [
    "baddate.dat",
    "badinv01.dat",
    "bcast.dat",
    "clerr.dat",
    "esc01.dat",
    "escruri.dat",
    "insuf.dat",
    "inv2543.dat",
    "longreq.dat",
    "ltgtruri.dat",
    "lwsruri.dat",
    "lwsstart.dat",
    "ncl.dat",
    "quotbal.dat",
    "sdp01.dat",
    "unreason.dat",
    "wsinv.dat",
]


@pytest.mark.parametrize("name", RFC4475_SDP)
def test_rfc4475_bodies_parse_and_round_trip_byte_exact(name: str) -> None:
    body = _body(name)
    sdp = parse_sdp(body)
    assert sdp.origin.username == "mhandley"
    assert sdp.origin.session_id == 29739
    assert sdp.origin.session_version == 7272939
    assert sdp.media[0].media == "audio"
    assert sdp.media[0].port == 49217
    assert sdp.media[0].codecs[0] == PCMU
    assert bytes(sdp) == body


def test_rfc4475_multi01_trailing_empty_line_is_tolerated() -> None:
    body = _body("multi01.dat")
    assert body.endswith(b"a=rtpmap:31 LPC\r\n\r\n")
    sdp = parse_sdp(body)
    assert sdp.to_bytes() == body[:-2]


def test_rfc4475_sdp01_fields() -> None:
    sdp = parse_sdp(_body("sdp01.dat"))
    assert sdp.origin == Origin("mhandley", 29739, 7272939, "IN", "IP4", "192.0.2.5")
    assert sdp.name == "-"
    assert sdp.connection == Connection("192.0.2.5", "IP4", "IN")
    assert sdp.timings == (Timing(0, 0),)
    audio, video = sdp.media
    assert (audio.proto, audio.formats) == ("RTP/AVP", ("0", "12"))
    assert [c.name for c in audio.codecs] == ["PCMU", "QCELP"]
    assert (video.media, video.port, video.formats) == ("video", 3227, ("31",))
    assert video.attributes == (Attribute("rtpmap", "31 LPC"),)
    # The rtpmap lacks a clock rate: kept verbatim, rejected only when someone reads it.
    with pytest.raises(SipParseError, match="a=rtpmap:31 LPC"):
        _ = video.codecs


def test_rfc4475_wsinv_media_level_address_is_session_level() -> None:
    sdp = parse_sdp(_body("wsinv.dat"))
    assert sdp.origin.address == "192.0.2.3"
    assert sdp.media_connection(0) == Connection("192.0.2.4")


def test_rfc4475_ltgtruri_start_time() -> None:
    assert parse_sdp(_body("ltgtruri.dat")).timings == (Timing(3149328700, 0),)


def test_rfc4475_mismatch02_lacks_s_and_t() -> None:
    with pytest.raises(SipParseError, match="no s= line"):
        parse_sdp(_body("mismatch02.dat"))


def test_rfc4475_dblreq_second_body_has_a_bad_line() -> None:
    second = _body("dblreq.dat").split(b"\r\n\r\n", 1)[1]
    with pytest.raises(SipParseError, match=r"SDP line 7 'm =video 3227 RTP/AVP 31'"):
        parse_sdp(second)


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
# Parsing and serializing every line type
# ---------------------------------------------------------------------------------------------

FULL = _crlf(f"""
v=0
o=jdoe 2890844526 2890842807 IN IP6 2001:db8::1
s=SDP Seminar
i=A Seminar on the session description protocol
u=http://www.example.com/seminars/sdp.pdf
e=j.doe@example.com (Jane Doe)
p=+1 617 555-6011
c=IN IP6 2001:db8::1
b=AS:128
t=2873397496 2873404696
r=7d 1h 0 25h
t=0 0
z=2882844526 -1h 2898848070 0
k=prompt
a=recvonly
a=tool:ifescalate 0.1
m=audio 49170 RTP/SAVP 0 8 96 97 101
i=voice
c=IN IP6 2001:db8::2
b=AS:64
k=prompt
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1; minptime=10
a=rtpmap:97 iLBC/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:30
a=maxptime:60
a=sendonly
a=rtcp:53020 IN IP6 2001:db8::3
a=rtcp-mux
a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY1}
a=crypto:2 AES_CM_128_HMAC_SHA1_32 {KEY2};{KEY1} KDR=1 UNENCRYPTED_SRTCP
a=x-unknown:  keep   this  verbatim
a=flag-only
m=video 51372/2 RTP/AVP 99
a=rtpmap:99 h263-1998/90000
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 224.2.36.42/127/3
c=IN IP4 224.2.36.43/127
a=sctp-port:5000
""")


def test_full_description_round_trips_byte_exact() -> None:
    sdp = parse_sdp(FULL)
    assert bytes(sdp) == FULL
    assert parse_sdp(FULL.decode()) == sdp


def test_full_description_session_fields() -> None:
    sdp = parse_sdp(FULL)
    assert sdp.origin.addrtype == "IP6"
    assert sdp.info == "A Seminar on the session description protocol"
    assert sdp.uri == "http://www.example.com/seminars/sdp.pdf"
    assert sdp.emails == ("j.doe@example.com (Jane Doe)",)
    assert sdp.phones == ("+1 617 555-6011",)
    assert sdp.connection == Connection("2001:db8::1", "IP6")
    assert [str(b) for b in sdp.bandwidths] == ["AS:128"]
    assert sdp.timings == (Timing(2873397496, 2873404696, ("7d 1h 0 25h",)), Timing(0, 0))
    assert sdp.zone == "2882844526 -1h 2898848070 0"
    assert sdp.key == "prompt"
    assert sdp.direction == "recvonly"
    assert sdp.attributes[1] == Attribute("tool", "ifescalate 0.1")


def test_full_description_audio_views() -> None:
    sdp = parse_sdp(FULL)
    audio = sdp.media[0]
    assert audio.title == "voice"
    assert audio.key == "prompt"
    assert audio.codecs == (
        PCMU,
        PCMA,
        Codec(96, "opus", 48000, 2, "useinbandfec=1; minptime=10"),
        Codec(97, "iLBC", 8000),
        Codec(101, "telephone-event", 8000, 1, "0-16"),
    )
    assert audio.ptime == 30
    assert audio.get("maxptime") == "60"
    assert audio.direction == "sendonly"
    assert sdp.media_direction(0) == "sendonly"
    assert audio.rtcp == RtcpAttribute(53020, "IN", "IP6", "2001:db8::3")
    assert audio.rtcp_mux
    assert audio.get("x-unknown") == "  keep   this  verbatim"
    assert audio.get("flag-only") == ""
    assert audio.get("absent") is None
    assert sdp.media_connection(0) == Connection("2001:db8::2", "IP6")


def test_full_description_other_media() -> None:
    sdp = parse_sdp(FULL)
    video, app = sdp.media[1], sdp.media[2]
    assert (video.port, video.port_count) == (51372, 2)
    assert video.codecs == (Codec(99, "h263-1998", 90000),)
    assert sdp.media_direction(1) == "recvonly"  # inherited from the session level
    assert app.codecs == ()  # not RTP: formats are not payload types
    assert app.connections[0].host == "224.2.36.42"
    assert app.connections[0].address == "224.2.36.42/127/3"


def test_crypto_attributes_parsed() -> None:
    first, second = parse_sdp(FULL).media[0].crypto
    assert first == CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", (KEY1,))
    assert first.keys == (CryptoKey("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "2^20", "1:32"),)
    assert second.tag == 2
    assert second.suite == "AES_CM_128_HMAC_SHA1_32"
    assert second.session_params == ("KDR=1", "UNENCRYPTED_SRTCP")
    assert [k.key_salt for k in second.keys] == [
        "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
        "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
    ]
    assert second.keys[0].lifetime is None and second.keys[0].mki is None
    assert str(second) == f"2 AES_CM_128_HMAC_SHA1_32 {KEY2};{KEY1} KDR=1 UNENCRYPTED_SRTCP"


@pytest.mark.parametrize("value", ["x AES_CM_128_HMAC_SHA1_80 inline:abc", "1 SUITE", "1 S nokey"])
def test_bad_crypto_attribute(value: str) -> None:
    with pytest.raises(SipParseError, match="bad crypto attribute"):
        CryptoAttribute.parse(value)


def test_rtcp_attribute_forms() -> None:
    assert RtcpAttribute.parse("53020") == RtcpAttribute(53020)
    assert str(RtcpAttribute.parse("53020 IN IP4 126.16.64.4")) == "53020 IN IP4 126.16.64.4"
    with pytest.raises(SipParseError, match="RFC 3605"):
        RtcpAttribute.parse("53020 IN IP4")
    with pytest.raises(SipParseError):
        RtcpAttribute.parse("70000")


MINIMAL = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"


def test_lenient_bare_lf_and_trailing_whitespace() -> None:
    sloppy = "v=0  \no=- 1 1 IN IP4 10.0.0.1\t\ns=-\nc=IN IP4 10.0.0.1\nt=0 0 \n\n\n"
    assert bytes(parse_sdp(sloppy)) == MINIMAL.encode()


def test_missing_final_line_end() -> None:
    assert bytes(parse_sdp(MINIMAL.rstrip("\r\n"))) == MINIMAL.encode()


def test_non_utf8_text_survives_round_trip() -> None:
    data = MINIMAL.replace("s=-", "s=caf\xe9").encode("latin-1")
    assert parse_sdp(data).to_bytes() == data


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with a v= line"),
        ("o=- 1 1 IN IP4 h\r\n", "must start with a v= line"),
        ("v=1\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n", r"SDP line 1 'v=1'"),
        (MINIMAL + "x=unknown\r\n", r"SDP line 6 'x=unknown': 'x=' is not allowed"),
        (MINIMAL + "o=- 2 2 IN IP4 h\r\n", r"SDP line 6 .*more than one 'o='"),
        (MINIMAL + "m =audio 1 RTP/AVP 0\r\n", r"SDP line 6 'm =audio 1 RTP/AVP 0'"),
        (MINIMAL + "M=audio 1 RTP/AVP 0\r\n", r"SDP line 6"),
        (MINIMAL + "m=audio 70000 RTP/AVP 0\r\n", r"SDP line 6 .*bad port"),
        (MINIMAL + "m=audio x RTP/AVP 0\r\n", r"SDP line 6 .*bad port"),
        (MINIMAL + "m=audio 1 RTP/AVP\r\n", r"SDP line 6 .*<media> <port>"),
        (MINIMAL + "m=audio 1 RTP/AVP 0\r\ni=a\r\ni=b\r\n", r"SDP line 8 .*more than one 'i='"),
        (MINIMAL + "m=audio 1 RTP/AVP 0\r\nt=0 0\r\n", r"SDP line 7 .*not allowed at media"),
        (MINIMAL + "a=:novalue\r\n", r"SDP line 6 .*bad attribute name"),
        (MINIMAL + "b=AS:fast\r\n", r"SDP line 6 .*bwtype"),
        ("v=0\r\no=- x 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n", r"SDP line 2 .*numeric"),
        ("v=0\r\no=- 1 1 IN IP4\r\ns=-\r\nt=0 0\r\n", r"SDP line 2"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4\r\nt=0 0\r\n", r"SDP line 4 .*RFC 8866"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\n", "no t= line"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nr=1d 1h 0\r\nt=0 0\r\n", r"SDP line 4 .*follow a t="),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0\r\n", r"SDP line 4 .*start-time"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\n\r\ns=-\r\nt=0 0\r\n", r"SDP line 3 ''"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=\x00\r\nt=0 0\r\n", r"SDP line 3"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=a\rb\r\nt=0 0\r\n", r"SDP line 3"),
    ],
)
def test_strict_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(SipParseError, match=message):
        parse_sdp(text)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ("a=rtpmap:96 opus\r\n", "a=rtpmap:96 opus"),
        ("a=rtpmap:200 x/8000\r\n", "a=rtpmap:200"),
        ("a=fmtp:abc 0-16\r\n", "a=fmtp:abc"),
    ],
)
def test_bad_codec_attributes_raise_when_read(attrs: str, message: str) -> None:
    sdp = parse_sdp(MINIMAL + "m=audio 1 RTP/AVP 0 96\r\n" + attrs)
    with pytest.raises(SipParseError, match=message):
        _ = sdp.media[0].codecs


def test_bad_payload_type_in_m_line() -> None:
    sdp = parse_sdp(MINIMAL + "m=audio 1 RTP/AVP 0 x\r\n")
    with pytest.raises(SipParseError, match="payload type 'x'"):
        _ = sdp.media[0].codecs


@pytest.mark.parametrize("value", ["soon", "nan", "inf", ""])
def test_bad_ptime(value: str) -> None:
    sdp = parse_sdp(MINIMAL + f"m=audio 1 RTP/AVP 0\r\na=ptime:{value}\r\n")
    with pytest.raises(SipParseError, match="ptime"):
        _ = sdp.media[0].ptime


@pytest.mark.parametrize("number", ["\u00b2", "\u0661", "\uff11"])
def test_non_ascii_digits_are_not_numbers(number: str) -> None:
    with pytest.raises(SipParseError, match="SDP line 2"):
        parse_sdp(f"v=0\r\no=- {number} 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n")
    sdp = parse_sdp(MINIMAL + f"m=audio 1 RTP/AVP {number}\r\n")
    with pytest.raises(SipParseError, match="payload type"):
        _ = sdp.media[0].codecs


def test_static_payload_types_rfc3551() -> None:
    assert STATIC_PAYLOAD_TYPES[0] == PCMU
    assert STATIC_PAYLOAD_TYPES[8] == PCMA
    assert STATIC_PAYLOAD_TYPES[9] == Codec(9, "G722", 8000)
    assert STATIC_PAYLOAD_TYPES[18] == G729
    assert STATIC_PAYLOAD_TYPES[10] == Codec(10, "L16", 44100, 2)
    assert STATIC_PAYLOAD_TYPES[13] == Codec(13, "CN", 8000)
    assert STATIC_PAYLOAD_TYPES[34] == Codec(34, "H263", 90000)
    assert 96 not in STATIC_PAYLOAD_TYPES and 19 not in STATIC_PAYLOAD_TYPES


def test_fractional_ptime_rounds() -> None:
    assert parse_sdp(MINIMAL + "m=audio 1 RTP/AVP 0\r\na=ptime:20.0\r\n").media[0].ptime == 20


def test_dynamic_payload_type_without_rtpmap_is_left_out() -> None:
    sdp = parse_sdp(MINIMAL + "m=audio 1 RTP/AVP 96 8\r\n")
    assert sdp.media[0].codecs == (PCMA,)


def test_codec_matching_and_rtpmap() -> None:
    assert Codec(96, "pcmu", 8000).matches(PCMU)
    assert not Codec(0, "PCMU", 16000).matches(PCMU)
    assert not Codec(111, "opus", 48000, 1).matches(OPUS)
    assert OPUS.rtpmap == "111 opus/48000/2"
    assert PCMU.rtpmap == "0 PCMU/8000"
    assert not TELEPHONE_EVENT.is_audio_codec and TELEPHONE_EVENT.is_telephone_event
    assert not Codec(13, "CN", 8000).is_audio_codec


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


# ---------------------------------------------------------------------------------------------
# Fuzz: parse or raise SipError, and so does everything that reads what was parsed
# ---------------------------------------------------------------------------------------------


def _exercise(data: bytes) -> None:
    try:
        sdp = parse_sdp(data)
    except SipError:
        return
    assert parse_sdp(bytes(sdp)) == sdp  # what we write, we read back the same
    for media in sdp.media:
        for view in ("codecs", "crypto", "rtcp", "ptime", "direction"):
            with contextlib.suppress(SipError):
                getattr(media, view)
    with contextlib.suppress(SipError):
        answer = build_answer(sdp, address="192.0.2.1", port=4000, codecs=[PCMU], session_id=1)
        negotiate(sdp, answer, role="answerer")


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_descriptions(data: st.DataObject) -> None:
    base = bytearray(data.draw(st.sampled_from([FULL, _body("sdp01.dat"), bytes(_offer())])))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(base) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = data.draw(st.sampled_from(b" :/=\r\n\x000129aAmc\xff\xb2-"))
        if action == "flip":
            base[position] = byte
        elif action == "insert":
            base.insert(position, byte)
        else:
            del base[position]
    _exercise(bytes(base))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _exercise(b"v=0\r\n" + data)
