"""SDES key handling (RFC 4568) and SRTP/SRTCP sessions (RFC 3711) over pylibsrtp."""

from __future__ import annotations

import base64
import random
import struct
from collections.abc import Callable

import pytest

from ifescalate.media.frames import MediaError
from ifescalate.media.srtp import (
    CryptoAttribute,
    CryptoParseError,
    Direction,
    KeyParams,
    NoAcceptableCrypto,
    SrtpAuthError,
    SrtpChannel,
    SrtpError,
    SrtpReplayError,
    SrtpSession,
    SrtpSuite,
    accept_answer,
    answer_crypto,
    make_crypto,
)

# RFC 4568 §4 and §5.1 examples (the same lines appear in many SDP test suites).
RFC_80 = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
RFC_32 = "1 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32"
# RFC 4568 §8.1 style offer with a session parameter.
RFC_FEC = (
    "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4 "
    "FEC_ORDER=FEC_SRTP"
)

SUITES = [SrtpSuite.AES_CM_128_HMAC_SHA1_80, SrtpSuite.AES_CM_128_HMAC_SHA1_32]


def rand_bytes(seed: int) -> Callable[[int], bytes]:
    """Deterministic injected randomness."""
    return random.Random(seed).randbytes


def rtp(seq: int, ssrc: int = 0x11223344, payload: bytes = b"\x55" * 160) -> bytes:
    # RFC 3550 §5.1 fixed header: V=2, PT=0, seq, timestamp, SSRC.
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload


def rtcp_rr(ssrc: int = 0x11223344) -> bytes:
    # RFC 3550 §6.4.2: an empty receiver report (RC=0, PT=201, length 1).
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


# --- parsing and formatting -------------------------------------------------------------------


def test_parse_rfc_example_80() -> None:
    attr = CryptoAttribute.parse(RFC_80)
    assert attr.tag == 1
    assert attr.srtp_suite is SrtpSuite.AES_CM_128_HMAC_SHA1_80
    (key,) = attr.key_params
    assert key.key_salt == base64.b64decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    assert len(key.key_salt) == 30
    assert key.lifetime == 1 << 20
    assert key.mki == (1, 32)
    assert key.mki_bytes == b"\x00" * 31 + b"\x01"
    assert attr.session_params == ()


def test_parse_rfc_example_32_with_prefix() -> None:
    attr = CryptoAttribute.parse("a=crypto:" + RFC_32)
    assert attr.srtp_suite is SrtpSuite.AES_CM_128_HMAC_SHA1_32
    assert attr.key_params[0].key_salt[:4] == base64.b64decode("NzB4d1BINUAv")[:4]


def test_parse_session_params_kept() -> None:
    attr = CryptoAttribute.parse(RFC_FEC)
    assert attr.session_params == ("FEC_ORDER=FEC_SRTP",)
    assert attr.key_params[0].mki == (1, 4)


@pytest.mark.parametrize("line", [RFC_80, RFC_32, RFC_FEC])
def test_format_round_trips_byte_exact(line: str) -> None:
    assert str(CryptoAttribute.parse(line)) == line
    assert CryptoAttribute.parse(line).line == "a=crypto:" + line


def test_lifetime_decimal_and_mki_without_lifetime() -> None:
    key = KeyParams.parse("inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1066")
    assert key.lifetime == 1066 and key.mki is None
    assert str(key).endswith("|1066")
    key = KeyParams.parse("inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|7:2")
    assert key.lifetime is None and key.mki == (7, 2)
    assert key.mki_bytes == b"\x00\x07"


def test_unknown_suite_parses() -> None:
    attr = CryptoAttribute.parse("3 F8_128_HMAC_SHA1_80 inline:AAAA")
    assert attr.srtp_suite is None
    assert attr.suite == "F8_128_HMAC_SHA1_80"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 AES_CM_128_HMAC_SHA1_80", "needs tag, suite and key params"),
        (
            "x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "bad crypto tag",
        ),
        ("1 AES_CM_128_HMAC_SHA1_80 uri:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "'inline'"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1u!CVe", "not base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "needs 30 bytes"),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^x",
            "lifetime",
        ),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:0", "1..128"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|300:1", "fit"),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:4|2^20",
            "before the MKI",
        ),
    ],
)
def test_parse_errors(line: str, message: str) -> None:
    with pytest.raises(CryptoParseError, match=message.replace("^", r"\^").replace("(", r"\(")):
        CryptoAttribute.parse(line)


def test_errors_are_media_errors() -> None:
    assert issubclass(CryptoParseError, MediaError)
    assert issubclass(SrtpAuthError, SrtpError)
    assert issubclass(SrtpReplayError, MediaError)


def test_make_crypto_uses_injected_randomness() -> None:
    one = make_crypto(2, SrtpSuite.AES_CM_128_HMAC_SHA1_32, rand_bytes(7))
    two = make_crypto(2, SrtpSuite.AES_CM_128_HMAC_SHA1_32, rand_bytes(7))
    other = make_crypto(2, SrtpSuite.AES_CM_128_HMAC_SHA1_32, rand_bytes(8))
    assert one == two != other
    assert str(one).startswith("2 AES_CM_128_HMAC_SHA1_32 inline:")
    assert len(one.key_params[0].key_salt) == 30
    with pytest.raises(SrtpError, match="returned 3 bytes"):
        make_crypto(1, SrtpSuite.AES_CM_128_HMAC_SHA1_80, lambda n: b"abc")


# --- offer / answer (RFC 4568 §7) -------------------------------------------------------------


def test_answer_picks_first_supported_and_keeps_tag() -> None:
    offers = [
        "1 AES_256_CM_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(46)).decode(),
        "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
        "3 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
    ]
    chosen, answer = answer_crypto(offers, rand_bytes(1))
    assert chosen.tag == 2
    assert (answer.tag, answer.suite) == (2, "AES_CM_128_HMAC_SHA1_32")
    assert answer.key_params[0].key_salt != chosen.key_params[0].key_salt


def test_answer_skips_unsupported_session_params() -> None:
    offers = [
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR UNENCRYPTED_SRTP",
        "2 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR KDR=10",
        "3 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR WSH=128",
    ]
    chosen, answer = answer_crypto(offers, rand_bytes(1))
    assert chosen.tag == answer.tag == 3


def test_answer_none_acceptable() -> None:
    with pytest.raises(NoAcceptableCrypto, match="F8_128_HMAC_SHA1_80"):
        answer_crypto(["1 F8_128_HMAC_SHA1_80 inline:AAAA"], rand_bytes(1))
    with pytest.raises(NoAcceptableCrypto, match="none"):
        answer_crypto([], rand_bytes(1))


def test_accept_answer_matches_tag_and_suite() -> None:
    ours = [
        make_crypto(1, SrtpSuite.AES_CM_128_HMAC_SHA1_80, rand_bytes(1)),
        make_crypto(2, SrtpSuite.AES_CM_128_HMAC_SHA1_32, rand_bytes(2)),
    ]
    reply = make_crypto(2, SrtpSuite.AES_CM_128_HMAC_SHA1_32, rand_bytes(3))
    assert accept_answer(ours, str(reply)) is ours[1]
    wrong_suite = make_crypto(2, SrtpSuite.AES_CM_128_HMAC_SHA1_80, rand_bytes(3))
    with pytest.raises(NoAcceptableCrypto, match="we offered AES_CM_128_HMAC_SHA1_32"):
        accept_answer(ours, wrong_suite)
    with pytest.raises(NoAcceptableCrypto, match="matches no offered"):
        accept_answer(ours, make_crypto(9, SrtpSuite.AES_CM_128_HMAC_SHA1_80, rand_bytes(3)))


# --- SRTP sessions ----------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_round_trip_rtp_and_rtcp(suite: SrtpSuite) -> None:
    key = rand_bytes(5)(30)
    tx = SrtpSession(Direction.OUTBOUND, suite, key)
    rx = SrtpSession(Direction.INBOUND, suite, key)
    for seq in range(1000, 1010):
        packet = rtp(seq)
        protected = tx.protect(packet)
        assert len(protected) == len(packet) + suite.rtp_tag_length
        assert protected[12:] != packet[12:] + protected[len(packet) :]  # payload is encrypted
        assert protected[:12] == packet[:12]  # header stays in clear (§3.1)
        assert rx.unprotect(protected) == packet
    report = rtcp_rr()
    sealed = tx.protect_rtcp(report)
    # SRTCP adds E||index (4) and always an 80-bit tag (RFC 4568 §6.2.1).
    assert len(sealed) == len(report) + 4 + 10
    assert rx.unprotect_rtcp(sealed) == report


@pytest.mark.parametrize("suite", SUITES)
def test_tampered_packet_fails_auth(suite: SrtpSuite) -> None:
    key = rand_bytes(5)(30)
    tx = SrtpSession(Direction.OUTBOUND, suite, key)
    rx = SrtpSession(Direction.INBOUND, suite, key)
    protected = bytearray(tx.protect(rtp(1)))
    protected[20] ^= 0x01
    with pytest.raises(SrtpAuthError, match="authentication failed"):
        rx.unprotect(bytes(protected))
    sealed = bytearray(tx.protect_rtcp(rtcp_rr()))
    sealed[4] ^= 0x80
    with pytest.raises(SrtpAuthError):
        rx.unprotect_rtcp(bytes(sealed))
    # A good packet still goes through after the bad ones were dropped.
    assert rx.unprotect(tx.protect(rtp(2))) == rtp(2)


@pytest.mark.parametrize("suite", SUITES)
def test_replay_is_refused(suite: SrtpSuite) -> None:
    key = rand_bytes(5)(30)
    tx = SrtpSession(Direction.OUTBOUND, suite, key)
    rx = SrtpSession(Direction.INBOUND, suite, key)
    protected = tx.protect(rtp(7))
    assert rx.unprotect(protected) == rtp(7)
    with pytest.raises(SrtpReplayError, match="replayed"):
        rx.unprotect(protected)
    sealed = tx.protect_rtcp(rtcp_rr())
    rx.unprotect_rtcp(sealed)
    with pytest.raises(SrtpReplayError):
        rx.unprotect_rtcp(sealed)


def test_too_old_is_refused() -> None:
    suite = SrtpSuite.AES_CM_128_HMAC_SHA1_80
    key = rand_bytes(5)(30)
    tx = SrtpSession(Direction.OUTBOUND, suite, key)
    rx = SrtpSession(Direction.INBOUND, suite, key, window_size=64)
    old = tx.protect(rtp(1))
    for seq in range(2, 200):
        rx.unprotect(tx.protect(rtp(seq)))
    with pytest.raises(SrtpReplayError, match="too old"):
        rx.unprotect(old)


def test_wrong_key_fails_auth() -> None:
    suite = SrtpSuite.AES_CM_128_HMAC_SHA1_80
    tx = SrtpSession(Direction.OUTBOUND, suite, rand_bytes(1)(30))
    rx = SrtpSession(Direction.INBOUND, suite, rand_bytes(2)(30))
    with pytest.raises(SrtpAuthError):
        rx.unprotect(tx.protect(rtp(1)))


def test_suite_mismatch_fails_auth() -> None:
    key = rand_bytes(1)(30)
    tx = SrtpSession(Direction.OUTBOUND, SrtpSuite.AES_CM_128_HMAC_SHA1_32, key)
    rx = SrtpSession(Direction.INBOUND, SrtpSuite.AES_CM_128_HMAC_SHA1_80, key)
    with pytest.raises(SrtpAuthError):
        rx.unprotect(tx.protect(rtp(1)))


def test_direction_is_enforced_and_bad_input_is_media_error() -> None:
    suite = SrtpSuite.AES_CM_128_HMAC_SHA1_80
    tx = SrtpSession(Direction.OUTBOUND, suite, bytes(30))
    rx = SrtpSession(Direction.INBOUND, suite, bytes(30))
    with pytest.raises(SrtpError, match="outbound SRTP session cannot unprotect"):
        tx.unprotect(b"\x80" * 40)
    with pytest.raises(SrtpError, match="inbound SRTP session cannot protect"):
        rx.protect(rtp(1))
    with pytest.raises(SrtpError):
        rx.unprotect(b"\x80\x00")
    with pytest.raises(SrtpError, match="too long"):
        tx.protect(rtp(1, payload=bytes(1490)))
    with pytest.raises(SrtpError, match="needs 30 bytes"):
        SrtpSession(Direction.OUTBOUND, suite, bytes(29))


@pytest.mark.parametrize("suite", SUITES)
def test_interop_from_formatted_crypto_lines(suite: SrtpSuite) -> None:
    # The answerer keys from what it would put in SDP; the offerer keys from the text it received.
    offer = make_crypto(1, suite, rand_bytes(11))
    chosen, answer = answer_crypto([str(offer)], rand_bytes(12))
    answerer = SrtpChannel(local=answer, remote=chosen)
    offerer = SrtpChannel(
        local=accept_answer([offer], answer.line), remote=CryptoAttribute.parse(answer.line)
    )
    assert offerer.unprotect(answerer.protect(rtp(5))) == rtp(5)
    assert answerer.unprotect(offerer.protect(rtp(9, ssrc=0xCAFE))) == rtp(9, ssrc=0xCAFE)
    assert answerer.unprotect_rtcp(offerer.protect_rtcp(rtcp_rr(0xCAFE))) == rtcp_rr(0xCAFE)
    # Each side sends with its own key: the offerer cannot read its own packets back.
    with pytest.raises(SrtpAuthError):
        offerer.unprotect(offerer.protect(rtp(6)))


def test_mki_is_inserted_before_the_tag_and_checked() -> None:
    attr = CryptoAttribute.parse(RFC_FEC.split(" FEC")[0])  # MKI 1, 4 bytes
    tx = SrtpSession.from_crypto(Direction.OUTBOUND, attr)
    rx = SrtpSession.from_crypto(Direction.INBOUND, attr)
    protected = tx.protect(rtp(3))
    assert len(protected) == len(rtp(3)) + 4 + 10
    assert protected[-14:-10] == b"\x00\x00\x00\x01"
    assert rx.unprotect(protected) == rtp(3)
    sealed = tx.protect_rtcp(rtcp_rr())
    assert sealed[-14:-10] == b"\x00\x00\x00\x01"
    assert rx.unprotect_rtcp(sealed) == rtcp_rr()
    wrong = bytearray(tx.protect(rtp(4)))
    wrong[-11] = 2
    with pytest.raises(SrtpAuthError, match="MKI"):
        rx.unprotect(bytes(wrong))
    plain = SrtpSession(
        Direction.INBOUND, SrtpSuite.AES_CM_128_HMAC_SHA1_80, attr.key_params[0].key_salt
    )
    with pytest.raises(SrtpAuthError):
        plain.unprotect(tx.protect(rtp(5)))


def test_channel_requires_same_tag_and_suite() -> None:
    a = make_crypto(1, SrtpSuite.AES_CM_128_HMAC_SHA1_80, rand_bytes(1))
    b = make_crypto(2, SrtpSuite.AES_CM_128_HMAC_SHA1_80, rand_bytes(2))
    with pytest.raises(NoAcceptableCrypto):
        SrtpChannel(a, b)
