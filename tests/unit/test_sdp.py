"""SDP (RFC 8866) parse/serialize and the data model.

Byte-exact fixtures: the SDP bodies of the RFC 4475 torture messages and a description using every
line type. Offer/answer (RFC 3264) is tested in test_offer_answer.py.
"""

from __future__ import annotations

import contextlib
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
    Origin,
    RtcpAttribute,
    Timing,
    build_answer,
    build_offer,
    negotiate,
    parse_sdp,
)

RFC4475 = Path("/work/shared/conformance/rfc4475")
KEY1 = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
KEY2 = "inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj"


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
# Fuzz: parse or raise SipError, and so does everything that reads what was parsed
# ---------------------------------------------------------------------------------------------

# A built offer as a fuzz seed; build_answer and negotiate are imported through the sdp re-export.
OFFER_SEED = bytes(
    build_offer(
        address="192.0.2.10",
        port=40000,
        codecs=[PCMU, PCMA, TELEPHONE_EVENT],
        session_id=1000,
        session_version=1000,
    )
)


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
    base = bytearray(data.draw(st.sampled_from([FULL, _body("sdp01.dat"), OFFER_SEED])))
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
