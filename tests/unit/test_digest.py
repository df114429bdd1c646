"""Digest authentication: RFC vectors, grammar, server/client round trips, failure reasons.

Virtual time only: every call takes ``now``; randomness is a deterministic counter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Callable

import pytest

from ifescalate.sip.digest import (
    AuthReason,
    AuthResult,
    DigestClient,
    DigestServer,
    MemoryNonceCounter,
    NonceCountCheck,
    UnsupportedChallenge,
    compute_response,
    format_challenge,
    format_credentials,
    ha1,
    parse_auth_header,
    parse_challenges,
)
from ifescalate.sip.errors import SipError, SipParseError
from ifescalate.sip.message import Request, parse_message

KEY = b"k" * 32
REALM = "ifescalate.test"
URI = "sip:council@ifescalate.test"


class CountingRand:
    """Deterministic, never-repeating bytes: SHA-256 of a counter, stretched to the size asked."""

    def __init__(self, seed: bytes = b"") -> None:
        self.seed = seed
        self.calls = 0

    def __call__(self, size: int) -> bytes:
        self.calls += 1
        out = b""
        block = 0
        while len(out) < size:
            out += hashlib.sha256(b"%s/%d/%d" % (self.seed, self.calls, block)).digest()
            block += 1
        return out[:size]


def users(**passwords: str) -> Callable[[str, str, str], str | None]:
    """A lookup over stored HA1 values only, as production must keep them."""
    table = {
        (name, REALM, alg): ha1(name, REALM, pw, alg)
        for name, pw in passwords.items()
        for alg in ("SHA-256", "MD5")
    }
    return lambda user, realm, alg: table.get((user, realm, alg))


def server(**kwargs: object) -> DigestServer:
    return DigestServer(REALM, KEY, rand=CountingRand(b"server"), **kwargs)  # type: ignore[arg-type]


LOOKUP = users(alice="wonderland", bob="builder")


# ---------------------------------------------------------------------------------------------
# RFC vectors
# ---------------------------------------------------------------------------------------------

# RFC 7616 §3.9.1 (password "Circle of Life", lowercase "of" per verified erratum 4495).
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_REALM = "http-auth@example.org"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_example(algorithm: str, expected: str) -> None:
    stored = ha1("Mufasa", RFC7616_REALM, "Circle of Life", algorithm)
    got = compute_response(
        algorithm,
        stored,
        nonce=RFC7616_NONCE,
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce=RFC7616_CNONCE,
    )
    assert got == expected


def test_rfc7616_authorization_header_parses_to_the_vector() -> None:
    value = (
        'Digest username="Mufasa",\t realm="http-auth@example.org", uri="/dir/index.html", '
        f'algorithm=SHA-256, nonce="{RFC7616_NONCE}", nc=00000001, cnonce="{RFC7616_CNONCE}", '
        "qop=auth, "
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
        f'opaque="{RFC7616_OPAQUE}"'
    )
    scheme, p = parse_auth_header(value)
    assert scheme == "Digest"
    stored = ha1(p["username"], p["realm"], "Circle of Life", p["algorithm"])
    got = compute_response(
        p["algorithm"],
        stored,
        nonce=p["nonce"],
        method="GET",
        uri=p["uri"],
        qop=p["qop"],
        nc=p["nc"],
        cnonce=p["cnonce"],
    )
    assert got == p["response"]


def test_rfc2617_section_3_5_example() -> None:
    stored = ha1("Mufasa", "testrealm@host.com", "Circle Of Life", "MD5")
    got = compute_response(
        "MD5",
        stored,
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert got == "6629fae49393a05397450978507c4ef1"


def test_rfc2069_example_without_qop() -> None:
    stored = ha1("Mufasa", "testrealm@host.com", "CircleOfLife", "MD5")
    got = compute_response(
        "MD5",
        stored,
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET",
        uri="/dir/index.html",
        qop=None,
    )
    assert got == "1949323746fe6a43ef61f9606e7febea"


def test_ha1_is_hash_of_user_realm_password() -> None:
    assert ha1("a", "r", "p", "MD5") == hashlib.md5(b"a:r:p").hexdigest()
    assert ha1("a", "r", "p", "SHA-256") == hashlib.sha256(b"a:r:p").hexdigest()
    assert ha1("a", "r", "p", "SHA-256-sess") == ha1("a", "r", "p", "SHA-256")
    with pytest.raises(ValueError, match="unsupported digest algorithm"):
        ha1("a", "r", "p", "SHA-1")


def test_sess_and_auth_int_follow_rfc7616_formulas() -> None:
    h = hashlib.sha256
    base = ha1("u", "r", "p", "SHA-256")
    sess = h(f"{base}:n:c".encode()).hexdigest()
    ha2 = h(f"INVITE:sip:x:{h(b'v=0').hexdigest()}".encode()).hexdigest()
    want = h(f"{sess}:n:00000001:c:auth-int:{ha2}".encode()).hexdigest()
    got = compute_response(
        "SHA-256-sess",
        base,
        nonce="n",
        method="INVITE",
        uri="sip:x",
        qop="auth-int",
        nc="00000001",
        cnonce="c",
        body=b"v=0",
    )
    assert got == want


# ---------------------------------------------------------------------------------------------
# Grammar
# ---------------------------------------------------------------------------------------------


def test_parse_quoted_escapes_tokens_and_case() -> None:
    scheme, p = parse_auth_header(
        'dIgEsT  REALM="a \\"quoted\\" \\\\ realm" ,NONCE = "x,y=z", Algorithm=MD5-sess,'
        ' stale=TRUE, empty="", utf8="caf\u00e9"'
    )
    assert scheme == "Digest"
    assert p == {
        "realm": 'a "quoted" \\ realm',
        "nonce": "x,y=z",
        "algorithm": "MD5-sess",
        "stale": "TRUE",
        "empty": "",
        "utf8": "caf\u00e9",
    }


def test_parse_keeps_other_schemes_and_bare_scheme() -> None:
    assert parse_auth_header("Basic realm=x") == ("Basic", {"realm": "x"})
    assert parse_auth_header("  Digest  ") == ("Digest", {})
    assert parse_auth_header('Digest realm="r", ,  ') == ("Digest", {"realm": "r"})  # #rule


def test_parse_challenges_splits_several_challenges_in_one_line() -> None:
    got = parse_challenges(
        'Digest realm="r", nonce="1", algorithm=SHA-256, ,Digest realm="r", algorithm=MD5, '
        "Newauth, Other a=b"
    )
    assert got == [
        ("Digest", {"realm": "r", "nonce": "1", "algorithm": "SHA-256"}),
        ("Digest", {"realm": "r", "algorithm": "MD5"}),
        ("Newauth", {}),
        ("Other", {"a": "b"}),
    ]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        'Digest realm="unterminated',
        'Digest realm="dangling\\',
        'Digest realm="a", realm="b"',
        'Digest realm="a", REALM="b"',
        "Digest realm",
        "Digest dXNlcjpwYXNz==",
        'Digest,realm="x"x',
        'Digestrealm="x"',
        'Digest realm="x" nonce="y"',
        "Digest realm=",
        "Digest realm=@bad",
        'Digest realm="ctl\x01char"',
        'Digest realm="a\\\nb"',
        '"Digest" realm=x',
        'Digest realm="x", Digest realm="y"',
    ],
)
def test_parse_auth_header_rejects_malformed(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_auth_header(value)


def test_format_round_trips_and_quotes_by_directive() -> None:
    ch = format_challenge(
        {"realm": 'r "1"', "nonce": "n/+=", "algorithm": "SHA-256", "qop": "auth", "stale": "true"}
    )
    assert ch == 'Digest realm="r \\"1\\"", nonce="n/+=", algorithm=SHA-256, qop="auth", stale=true'
    assert parse_auth_header(ch)[1]["realm"] == 'r "1"'
    cr = format_credentials(
        {"username": "a\\b", "uri": "sip:x", "qop": "auth", "nc": "00000001", "response": "ab"}
    )
    assert cr == 'Digest username="a\\\\b", uri="sip:x", qop=auth, nc=00000001, response="ab"'
    assert parse_auth_header(cr)[1]["username"] == "a\\b"


@pytest.mark.parametrize(
    "params",
    [{"realm": "a\r\nVia: evil"}, {"bad name": "x"}, {"algorithm": "SHA 256"}],
)
def test_format_refuses_unsendable_values(params: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        format_challenge(params)


# ---------------------------------------------------------------------------------------------
# Server challenges and nonces
# ---------------------------------------------------------------------------------------------


def test_challenge_is_one_per_algorithm_sha256_first_with_exact_nonce() -> None:
    s = DigestServer(REALM, KEY, algorithms=["MD5", "SHA-256"], rand=CountingRand(b"x"))
    values = s.challenge(12.3456)
    assert len(values) == 2
    first, second = (parse_auth_header(v)[1] for v in values)
    assert first["algorithm"] == "SHA-256" and second["algorithm"] == "MD5"
    assert first["nonce"] != second["nonce"]
    for p in (first, second):
        assert p["realm"] == REALM and p["qop"] == "auth" and p["opaque"] == s.opaque
        assert "stale" not in p
    # The nonce is base64(ts_ms || random || HMAC-SHA256(key, ts_ms || random || realm)[:24]).
    raw = base64.b64decode(first["nonce"])
    assert len(raw) == 48 and len(first["nonce"]) == 64
    assert struct.unpack(">q", raw[:8])[0] == 12345
    mac = hmac.new(KEY, raw[:24] + REALM.encode(), hashlib.sha256).digest()[:24]
    assert raw[24:] == mac
    assert values[0] == (
        f'Digest realm="{REALM}", nonce="{first["nonce"]}", algorithm=SHA-256, qop="auth", '
        f'opaque="{s.opaque}"'
    )


def test_challenge_stale_flag_and_algorithm_subset() -> None:
    s = server()
    (only,) = s.challenge(0.0, stale=True, algorithms=["sha-256"])
    p = parse_auth_header(only)[1]
    assert p["stale"] == "true" and p["algorithm"] == "SHA-256"
    with pytest.raises(ValueError, match="not allowed"):
        server(algorithms=["SHA-256"]).challenge(0.0, algorithms=["MD5"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithms": []},
        {"algorithms": ["SHA-1"]},
        {"nonce_lifetime": 0},
        {"qops": ["auth-conf"]},
        {"qops": []},
    ],
)
def test_server_rejects_bad_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        server(**kwargs)
    with pytest.raises(ValueError, match="16 bytes"):
        DigestServer(REALM, b"short")


# ---------------------------------------------------------------------------------------------
# Round trips and failure reasons
# ---------------------------------------------------------------------------------------------


def login(
    s: DigestServer,
    user: str,
    password: str,
    *,
    now: float = 100.0,
    at: float | None = None,
    method: str = "INVITE",
    body: bytes = b"",
    challenge: list[str] | None = None,
) -> tuple[str, AuthResult]:
    """Challenge at *now*, answer, verify at *at* (default *now*)."""
    values = challenge if challenge is not None else s.challenge(now)
    header = DigestClient(user, password, CountingRand(b"client")).answer(
        values, method, URI, body=body
    )
    return header, s.verify(method, header, LOOKUP, now if at is None else at, body=body)


def test_round_trip_sha256_ok() -> None:
    header, result = login(server(), "alice", "wonderland")
    assert result == AuthResult(True, "alice", AuthReason.OK)
    p = parse_auth_header(header)[1]
    assert p["algorithm"] == "SHA-256" and p["qop"] == "auth" and p["nc"] == "00000001"


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256-sess"])
def test_round_trip_other_algorithms(algorithm: str) -> None:
    s = server(algorithms=[algorithm])
    header, result = login(s, "bob", "builder")
    assert result.ok, result
    assert parse_auth_header(header)[1]["algorithm"] == algorithm


def test_round_trip_auth_int_covers_the_body() -> None:
    s = server(qops=["auth-int"])
    header, result = login(s, "alice", "wonderland", body=b"v=0\r\n")
    assert result.ok and parse_auth_header(header)[1]["qop"] == "auth-int"
    tampered = s.verify("INVITE", header, LOOKUP, 100.0, body=b"v=1\r\n")
    assert tampered.reason is AuthReason.UNKNOWN_USER_OR_BAD_PASSWORD


def test_round_trip_through_a_parsed_sip_request() -> None:
    s = server()
    header = DigestClient("alice", "wonderland", CountingRand()).answer(
        s.challenge(5.0), "REGISTER", URI
    )
    wire = (
        f"REGISTER {URI} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
        "From: <sip:alice@ifescalate.test>;tag=1\r\nTo: <sip:alice@ifescalate.test>\r\n"
        "Call-ID: c1\r\nCSeq: 2 REGISTER\r\n"
        f"Authorization: {header}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    req = parse_message(wire)
    assert isinstance(req, Request)
    got = s.verify(req.method, req.headers.get("Authorization"), LOOKUP, 6.0, request_uri=req.uri)
    assert got.ok


def test_wrong_password_and_unknown_user_share_one_reason() -> None:
    _, wrong = login(server(), "alice", "not-it")
    _, unknown = login(server(), "mallory", "wonderland")
    assert wrong == AuthResult(False, "alice", AuthReason.UNKNOWN_USER_OR_BAD_PASSWORD)
    assert unknown == AuthResult(False, "mallory", AuthReason.UNKNOWN_USER_OR_BAD_PASSWORD)


def test_unknown_user_does_the_same_hashing_as_wrong_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same path, same work: the dummy HA1 makes an unknown user cost what a known one does."""
    s = server()
    client = DigestClient("alice", "x", CountingRand())
    wrong = client.answer(s.challenge(1.0), "INVITE", URI)
    unknown = DigestClient("mallory", "x", CountingRand()).answer(s.challenge(1.0), "INVITE", URI)
    counts: list[int] = []
    real_new = hashlib.new

    def counting_new(name: str, data: bytes = b"") -> hashlib._Hash:
        counts[-1] += 1
        return real_new(name, data)

    monkeypatch.setattr(hashlib, "new", counting_new)
    for header in (wrong, unknown):
        counts.append(0)
        s.verify("INVITE", header, LOOKUP, 1.0)
    assert counts[0] == counts[1] > 0


def test_expired_nonce_is_stale_and_fresh_challenge_says_so() -> None:
    s = server()  # lifetime 300 s
    challenge = s.challenge(100.0)
    _, ok_at_edge = login(s, "alice", "wonderland", challenge=challenge, at=399.999)
    assert ok_at_edge.ok
    _, late = login(s, "alice", "wonderland", challenge=challenge, at=400.0)
    assert late == AuthResult(False, "alice", AuthReason.STALE, stale=True)
    # RFC 2617 §3.2.1: stale only when the digest was right, so a guesser learns nothing.
    _, late_wrong = login(s, "alice", "guess", challenge=challenge, at=400.0)
    assert late_wrong.reason is AuthReason.UNKNOWN_USER_OR_BAD_PASSWORD and not late_wrong.stale
    again = s.challenge(400.0, stale=late.stale)
    assert all(parse_auth_header(v)[1]["stale"] == "true" for v in again)
    _, retried = login(s, "alice", "wonderland", challenge=again, now=400.0)
    assert retried.ok


def test_nonce_from_the_future_is_stale() -> None:
    s = server()
    _, result = login(s, "alice", "wonderland", now=1000.0, at=1000.0 - 300.5)
    assert result.reason is AuthReason.STALE


def _with_nonce(header: str, nonce: str) -> str:
    _, p = parse_auth_header(header)
    p["nonce"] = nonce
    return format_credentials(p)


def test_forged_nonces_are_told_apart_from_stale() -> None:
    s = server()
    header, _ = login(s, "alice", "wonderland")
    nonce = parse_auth_header(header)[1]["nonce"]
    raw = bytearray(base64.b64decode(nonce))
    raw[3] ^= 1  # move the timestamp: the HMAC no longer matches
    other_key = DigestServer(REALM, b"o" * 32, rand=CountingRand()).make_nonce(100.0)
    other_realm = DigestServer("elsewhere", KEY, rand=CountingRand()).make_nonce(100.0)
    for forged in (
        base64.b64encode(bytes(raw)).decode(),
        other_key,
        other_realm,
        "not base64 !",
        base64.b64encode(b"short").decode(),
        "caf\u00e9",
    ):
        got = s.verify("INVITE", _with_nonce(header, forged), LOOKUP, 100.0)
        assert got == AuthResult(False, "alice", AuthReason.FORGED_NONCE), forged


def test_replayed_or_lower_nonce_count_is_refused() -> None:
    s = server()
    client = DigestClient("alice", "wonderland", CountingRand())
    challenge = s.challenge(10.0)
    first = client.answer(challenge, "INVITE", URI)
    second = client.answer(challenge, "INVITE", URI)
    assert parse_auth_header(second)[1]["nc"] == "00000002"
    assert s.verify("INVITE", second, LOOKUP, 11.0).ok
    assert s.verify("INVITE", second, LOOKUP, 11.0).reason is AuthReason.REPLAY
    assert s.verify("INVITE", first, LOOKUP, 12.0).reason is AuthReason.REPLAY
    third = client.answer(challenge, "BYE", URI)
    assert s.verify("BYE", third, LOOKUP, 13.0).ok


def test_forged_response_cannot_burn_nonce_counts() -> None:
    s = server()
    challenge = s.challenge(10.0)
    legit = DigestClient("alice", "wonderland", CountingRand()).answer(challenge, "INVITE", URI)
    _, p = parse_auth_header(
        DigestClient("alice", "guess", CountingRand()).answer(challenge, "INVITE", URI)
    )
    p["nc"] = "ffffffff"
    attack = s.verify("INVITE", format_credentials(p), LOOKUP, 10.0)
    assert attack.reason is AuthReason.UNKNOWN_USER_OR_BAD_PASSWORD
    assert s.verify("INVITE", legit, LOOKUP, 10.0).ok


def test_algorithm_not_allowed() -> None:
    sha_only = server(algorithms=["SHA-256"])
    md5_answer = DigestClient("alice", "wonderland", CountingRand()).answer(
        server(algorithms=["MD5"]).challenge(1.0), "INVITE", URI
    )
    got = sha_only.verify("INVITE", md5_answer, LOOKUP, 1.0)
    assert got == AuthResult(False, "alice", AuthReason.ALGORITHM_NOT_ALLOWED)
    _, p = parse_auth_header(md5_answer)
    p["algorithm"] = "SHA-512-256"
    got = sha_only.verify("INVITE", format_credentials(p), LOOKUP, 1.0)
    assert got.reason is AuthReason.ALGORITHM_NOT_ALLOWED
    # RFC 2617 §3.2.1: no algorithm means MD5, which this server does not allow.
    del p["algorithm"]
    got = sha_only.verify("INVITE", format_credentials(p), LOOKUP, 1.0)
    assert got.reason is AuthReason.ALGORITHM_NOT_ALLOWED


def test_realm_and_uri_mismatch() -> None:
    s = server()
    header, _ = login(s, "alice", "wonderland")
    _, p = parse_auth_header(header)
    got = s.verify("INVITE", format_credentials({**p, "realm": "other"}), LOOKUP, 100.0)
    assert got.reason is AuthReason.REALM_MISMATCH
    got = s.verify("INVITE", header, LOOKUP, 100.0, request_uri="sip:other@ifescalate.test")
    assert got.reason is AuthReason.URI_MISMATCH


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_credentials(value: str | None) -> None:
    assert server().verify("INVITE", value, LOOKUP, 0.0) == AuthResult(
        False, None, AuthReason.MISSING
    )


def _mutations(p: dict[str, str]) -> list[dict[str, str]]:
    drop = [{k: v for k, v in p.items() if k != gone} for gone in ("username", "uri", "response")]
    return [
        *drop,
        {k: v for k, v in p.items() if k != "nc"},
        {**p, "nc": "1"},
        {**p, "nc": "00000000"},
        {**p, "nc": "0000000g"},
        {**p, "qop": "auth-int"},  # not offered
        {**p, "qop": "auth-conf"},
        {**p, "response": p["response"][:-2]},
        {**p, "response": "z" * 64},
        {**p, "opaque": "changed"},
        {k: v for k, v in p.items() if k not in ("qop", "nc", "cnonce")},  # RFC 2069, not allowed
    ]


def test_malformed_credentials_are_reported_not_raised() -> None:
    s = server()
    header, _ = login(s, "alice", "wonderland")
    assert s.verify("INVITE", 'Digest username="alice', LOOKUP, 100.0) == AuthResult(
        False, None, AuthReason.MALFORMED
    )
    assert s.verify("INVITE", "Basic realm=x", LOOKUP, 100.0).reason is AuthReason.MALFORMED
    for bad in _mutations(parse_auth_header(header)[1]):
        got = s.verify("INVITE", format_credentials(bad), LOOKUP, 100.0)
        assert got.reason is AuthReason.MALFORMED, bad


def test_rfc2069_only_when_allowed() -> None:
    s = server(qops=[], allow_rfc2069=True)
    header, result = login(s, "alice", "wonderland")
    p = parse_auth_header(header)[1]
    assert result.ok and "qop" not in p and "nc" not in p and "cnonce" not in p
    assert "qop" not in parse_auth_header(s.challenge(0.0)[0])[1]


def test_opaque_may_be_omitted_and_response_hex_is_case_insensitive() -> None:
    s = server()
    header = DigestClient("alice", "wonderland", CountingRand()).answer(
        s.challenge(1.0), "ACK", URI
    )
    _, p = parse_auth_header(header)
    del p["opaque"]
    p["response"] = p["response"].upper()
    assert s.verify("ACK", format_credentials(p), LOOKUP, 1.0).ok


def test_auth_result_is_consistent() -> None:
    with pytest.raises(ValueError):
        AuthResult(True, "a", AuthReason.REPLAY)
    with pytest.raises(ValueError):
        AuthResult(False, "a", AuthReason.REPLAY, stale=True)
    with pytest.raises(ValueError):
        AuthResult(False, "a", AuthReason.STALE)


# ---------------------------------------------------------------------------------------------
# Nonce-count store
# ---------------------------------------------------------------------------------------------


def test_memory_counter_orders_counts_and_forgets_expired_nonces() -> None:
    c = MemoryNonceCounter()
    assert c.check_and_set("n", 1, expires_at=10.0, now=0.0)
    assert not c.check_and_set("n", 1, expires_at=10.0, now=1.0)
    assert c.check_and_set("n", 5, expires_at=10.0, now=1.0)
    assert not c.check_and_set("n", 3, expires_at=10.0, now=1.0)
    assert c.check_and_set("m", 1, expires_at=20.0, now=2.0)
    assert len(c) == 2
    assert c.check_and_set("other", 1, expires_at=30.0, now=10.0)
    assert len(c) == 2  # "n" expired at 10.0 and was dropped


def test_memory_counter_eviction_refuses_rather_than_reopens() -> None:
    c = MemoryNonceCounter(capacity=2)
    assert c.check_and_set("a", 1, expires_at=10.0, now=0.0)
    assert c.check_and_set("b", 1, expires_at=20.0, now=0.0)
    assert c.check_and_set("c", 1, expires_at=30.0, now=0.0)  # evicts "a", the first to expire
    assert len(c) == 2
    assert not c.check_and_set("a", 1, expires_at=10.0, now=0.0)  # a replay stays refused
    assert not c.check_and_set("a", 2, expires_at=10.0, now=0.0)
    assert c.check_and_set("b", 2, expires_at=20.0, now=0.0)
    # A newcomer that would expire first is itself evicted at once and refused.
    assert not c.check_and_set("early", 1, expires_at=15.0, now=0.0)
    # Once a purge makes room, the evicted nonce has expired too, and expired nonces are refused.
    assert c.check_and_set("d", 1, expires_at=40.0, now=20.0)
    assert len(c) == 2
    assert not c.check_and_set("a", 1, expires_at=10.0, now=20.0)
    assert not c.check_and_set("e", 1, expires_at=20.0, now=20.0)
    assert not MemoryNonceCounter().check_and_set("late", 1, expires_at=5.0, now=5.0)
    with pytest.raises(ValueError):
        MemoryNonceCounter(capacity=0)


def test_server_uses_injected_counter() -> None:
    seen: list[tuple[str, int, float, float]] = []

    class Recorder:
        def check_and_set(self, nonce: str, nc: int, expires_at: float, now: float) -> bool:
            seen.append((nonce, nc, expires_at, now))
            return len(seen) == 1

    s = server(nonce_counter=Recorder())
    header, first = login(s, "alice", "wonderland", now=50.0, at=60.0)
    assert first.ok
    assert seen == [(parse_auth_header(header)[1]["nonce"], 1, 350.0, 60.0)]
    assert s.verify("INVITE", header, LOOKUP, 61.0).reason is AuthReason.REPLAY


def test_verify_digest_leaves_the_count_to_the_caller_and_keys_can_be_shared() -> None:
    a, b = server(), DigestServer(REALM, b"x" * 32, rand=CountingRand(b"b"))
    header = DigestClient("alice", "wonderland", CountingRand(b"client")).answer(
        a.challenge(100.0), "INVITE", URI
    )
    nonce = parse_auth_header(header)[1]["nonce"]
    check = a.verify_digest("INVITE", header, LOOKUP, 101.0)
    assert check == NonceCountCheck("alice", nonce, 1, 400.0)
    assert check.result(True) == AuthResult(True, "alice", AuthReason.OK)
    assert check.result(False) == AuthResult(False, "alice", AuthReason.REPLAY)
    # The caller's store decided: a's own counter saw nothing, so verify() still accepts once.
    assert a.verify("INVITE", header, LOOKUP, 102.0).ok
    # Another key refuses it (its opaque and nonce MAC differ); re-keyed, it accepts.
    refused = b.verify_digest("INVITE", header, LOOKUP, 101.0)
    assert isinstance(refused, AuthResult) and not refused.ok
    twin = b.with_key(KEY)
    assert isinstance(twin.verify_digest("INVITE", header, LOOKUP, 101.0), NonceCountCheck)


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------


def test_client_prefers_sha256_whatever_the_order() -> None:
    md5 = 'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"'
    sha = 'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth,auth-int"'
    basic = 'Basic realm="r"'
    rand = CountingRand()
    header = DigestClient("u", "p", rand).answer([basic, md5, sha], "INVITE", URI)
    p = parse_auth_header(header)[1]
    assert p["algorithm"] == "SHA-256" and p["nonce"] == "n2" and p["qop"] == "auth"
    assert p["cnonce"] == CountingRand()(16).hex()
    want = compute_response(
        "SHA-256",
        ha1("u", "r", "p", "SHA-256"),
        nonce="n2",
        method="INVITE",
        uri=URI,
        qop="auth",
        nc="00000001",
        cnonce=p["cnonce"],
    )
    assert header == (
        f'Digest username="u", realm="r", nonce="n2", uri="{URI}", response="{want}", '
        f'algorithm=SHA-256, cnonce="{p["cnonce"]}", qop=auth, nc=00000001'
    )


def test_client_counts_per_nonce_and_echoes_opaque() -> None:
    client = DigestClient("u", "p", CountingRand())
    a = ['Digest realm="r", nonce="A", qop="auth", opaque="o\\"q"']
    b = ['Digest realm="r", nonce="B", qop="auth"']
    ncs = [parse_auth_header(client.answer(ch, "OPTIONS", URI))[1]["nc"] for ch in (a, a, b, a)]
    assert ncs == ["00000001", "00000002", "00000001", "00000003"]
    p = parse_auth_header(client.answer(a, "OPTIONS", URI))[1]
    assert p["opaque"] == 'o"q' and "algorithm" not in p  # none offered: MD5 implied


def test_client_nonce_memory_is_bounded() -> None:
    client = DigestClient("u", "p", CountingRand(), max_nonces=2)
    for nonce in ("A", "B", "C", "A"):
        header = client.answer([f'Digest realm="r", nonce="{nonce}", qop="auth"'], "INVITE", URI)
    assert parse_auth_header(header)[1]["nc"] == "00000001"  # "A" was forgotten


@pytest.mark.parametrize(
    "challenges",
    [
        ['Digest realm="r", nonce="n", algorithm=SHA-512-256, qop="auth"'],
        ['Digest realm="r", nonce="n", qop="auth-conf"'],
        ['Digest nonce="n", qop="auth"'],
        ['Basic realm="r"'],
        [],
    ],
)
def test_client_refuses_what_it_cannot_answer(challenges: list[str]) -> None:
    with pytest.raises(UnsupportedChallenge) as info:
        DigestClient("u", "p", CountingRand()).answer(challenges, "INVITE", URI)
    assert isinstance(info.value, SipError)


def test_client_raises_parse_error_on_malformed_challenge() -> None:
    with pytest.raises(SipParseError):
        DigestClient("u", "p", CountingRand()).answer(['Digest realm="r'], "INVITE", URI)


def test_oversized_credentials_are_malformed_without_parsing() -> None:
    from ifescalate.sip.digest import MAX_CREDENTIALS_LENGTH, AuthReason, DigestServer

    server = DigestServer("realm", b"k" * 32)
    huge = 'Digest username="' + "a" * MAX_CREDENTIALS_LENGTH + '"'
    result = server.verify("INVITE", huge, lambda u, r, a: None, 0.0)
    assert result.reason is AuthReason.MALFORMED and result.username is None
