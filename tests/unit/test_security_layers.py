"""The pure security layers (allowlist, transport, policy), facts, header hygiene, the pipeline."""

from __future__ import annotations

import asyncio

import pytest

from ifescalate.security import (
    Allow,
    AllowlistLayer,
    AuthFacts,
    AuthOutcome,
    Challenge,
    ExpertFacts,
    FloodConfig,
    Layer,
    LockoutConfig,
    MemoryCounters,
    Pipeline,
    PolicyDecision,
    PolicyLayer,
    Reject,
    RejectionAggregator,
    RequestFacts,
    SecurityConfig,
    TlsFacts,
    TransportConfig,
    TransportLayer,
    auth_facts,
    is_strong_cipher,
    parse_rate,
    strip_if_headers,
)
from ifescalate.security.facts import parse_networks
from ifescalate.security.layers import policy_label
from ifescalate.sip.digest import AuthReason, AuthResult
from ifescalate.sip.message import Headers

T0 = 1_000.0
FP = "ab" * 32
GOOD_TLS = TlsFacts("TLSv1.3", "TLS_AES_256_GCM_SHA384")


def tls_req(ip: str, tls: TlsFacts = GOOD_TLS, method: str = "INVITE") -> RequestFacts:
    return RequestFacts(ip, "tls", method, tls=tls)


# -- facts ---------------------------------------------------------------------------------------


def test_request_facts_validate_and_fold() -> None:
    assert RequestFacts("2001:db8:a:b:1:2:3:4", "UDP", "INVITE").source == "2001:db8:a:b::/64"
    assert RequestFacts("fe80::1%eth0", "udp", "OPTIONS").source == "fe80::/64"
    assert RequestFacts("::ffff:10.0.0.1", "tcp", "INVITE").source == "10.0.0.1"
    with pytest.raises(ValueError):
        RequestFacts("not-an-ip", "udp", "INVITE")
    with pytest.raises(ValueError):
        RequestFacts("10.0.0.1", "sctp", "INVITE")
    with pytest.raises(ValueError, match="contradicts"):
        RequestFacts("10.0.0.1", "tls", "INVITE")  # TLS transport without TLS facts
    with pytest.raises(ValueError, match="contradicts"):
        RequestFacts("10.0.0.1", "udp", "INVITE", tls=GOOD_TLS)


def test_fingerprints_normalised_and_checked() -> None:
    colon = ":".join(["AB"] * 32)
    assert TlsFacts("TLSv1.3", "x", colon).peer_cert_sha256 == FP
    assert ExpertFacts("e", "o", cert_fingerprints=(colon,)).cert_fingerprints == (FP,)
    with pytest.raises(ValueError):
        ExpertFacts("e", "o", cert_fingerprints=("ab" * 31,))
    with pytest.raises(ValueError):
        TlsFacts("TLSv1.3", "x", "abcd")


def test_reject_validates_status_and_label() -> None:
    with pytest.raises(ValueError):
        Reject(200, "OK", Layer.FLOOD, "x")
    with pytest.raises(ValueError):
        Reject(403, "Forbidden", Layer.FLOOD, "Has Spaces")
    with pytest.raises(ValueError):
        AuthFacts(AuthOutcome.OK, "alice")  # success must name the expert


def test_auth_facts_from_digest_result() -> None:
    alice = ExpertFacts("alice", "acme")
    ok = auth_facts(AuthResult(True, "alice", AuthReason.OK), algorithm="SHA-256", expert=alice)
    assert ok == AuthFacts(AuthOutcome.OK, "alice", "SHA-256", alice)
    bad = auth_facts(
        AuthResult(False, "alice", AuthReason.UNKNOWN_USER_OR_BAD_PASSWORD), expert=alice
    )
    assert bad.outcome is AuthOutcome.FAILED and bad.expert is None
    stale = auth_facts(AuthResult(False, "alice", AuthReason.STALE, stale=True))
    assert stale.outcome is AuthOutcome.STALE
    for reason in (AuthReason.REPLAY, AuthReason.FORGED_NONCE, AuthReason.MALFORMED):
        assert auth_facts(AuthResult(False, None, reason)).outcome is AuthOutcome.INVALID
    assert auth_facts(AuthResult(False, None, AuthReason.MISSING)).outcome is AuthOutcome.MISSING


# -- allowlist -----------------------------------------------------------------------------------


def test_allowlist_per_org_cidrs() -> None:
    layer = AllowlistLayer({"acme": ["198.51.100.0/24"], "globex": ["2001:db8:5::/48"]})
    assert layer.decide(RequestFacts("198.51.100.200", "udp", "INVITE")) == Allow()
    assert layer.decide(RequestFacts("2001:db8:5:1::9", "udp", "INVITE")) == Allow()
    d = layer.decide(RequestFacts("198.51.101.1", "udp", "INVITE"))
    assert d == Reject(403, "Forbidden - IP Not Allowlisted", Layer.ALLOWLIST, "not_allowlisted")
    # An IPv4-mapped source is the IPv4 host.
    assert layer.decide(RequestFacts("::ffff:198.51.100.1", "udp", "INVITE")) == Allow()
    assert AllowlistLayer(None).decide(RequestFacts("203.0.113.1", "udp", "INVITE")) == Allow()
    assert isinstance(AllowlistLayer({}).decide(RequestFacts("127.0.0.1", "udp", "X")), Reject)


def test_allowlist_binds_source_to_the_experts_org() -> None:
    layer = AllowlistLayer({"acme": ["198.51.100.0/24"], "globex": ["203.0.113.0/24"]})
    alice = ExpertFacts("alice", "acme")
    own = ExpertFacts("olga", "solo", parse_networks(["192.0.2.0/28"]))
    assert layer.decide_expert(RequestFacts("198.51.100.7", "udp", "INVITE"), alice) == Allow()
    # globex's network passes the pre-auth check but cannot speak for acme's expert.
    d = layer.decide_expert(RequestFacts("203.0.113.7", "udp", "INVITE"), alice)
    assert isinstance(d, Reject) and d.reason_label == "not_expert_network"
    assert layer.decide_expert(RequestFacts("192.0.2.3", "udp", "INVITE"), own) == Allow()
    assert isinstance(layer.decide_expert(RequestFacts("192.0.2.30", "udp", "I"), own), Reject)
    # No networks anywhere for this expert: fail closed.
    nobody = ExpertFacts("n", "none")
    assert isinstance(
        AllowlistLayer(None).decide_expert(RequestFacts("127.0.0.1", "udp", "I"), nobody), Reject
    )


# -- transport -----------------------------------------------------------------------------------


def test_tls_required_off_loopback_only() -> None:
    layer = TransportLayer()
    for ip in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"):
        assert layer.decide(RequestFacts(ip, "udp", "INVITE")) == Allow(), ip
    for ip in ("198.51.100.1", "::2", "10.0.0.1"):
        d = layer.decide(RequestFacts(ip, "tcp", "INVITE"))
        assert d == Reject(403, "Forbidden - TLS Required", Layer.TRANSPORT, "tls_required")
    assert (
        TransportLayer(TransportConfig(require_tls=False)).decide(
            RequestFacts("198.51.100.1", "udp", "INVITE")
        )
        == Allow()
    )
    assert layer.decide(tls_req("198.51.100.1")) == Allow()


def test_tls_version_and_cipher_strength() -> None:
    layer = TransportLayer()
    ok12 = TlsFacts("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")
    assert layer.decide(tls_req("198.51.100.1", ok12)) == Allow()
    for version in ("TLSv1.1", "TLSv1", "SSLv3", "TLSv9"):
        d = layer.decide(tls_req("198.51.100.1", TlsFacts(version, "ECDHE-RSA-AES128-GCM-SHA256")))
        assert isinstance(d, Reject) and d.reason_label == "tls_version", version
    weak = TlsFacts("TLSv1.2", "ECDHE-RSA-AES128-SHA")  # CBC
    d = layer.decide(tls_req("198.51.100.1", weak))
    assert isinstance(d, Reject) and d.reason_label == "weak_cipher"
    assert d.reason_phrase == "Forbidden - TLS Required"
    only13 = TransportLayer(TransportConfig(min_version="TLSv1.3"))
    assert isinstance(only13.decide(tls_req("198.51.100.1", ok12)), Reject)


@pytest.mark.parametrize(
    ("cipher", "strong"),
    [
        ("TLS_AES_128_GCM_SHA256", True),
        ("TLS_CHACHA20_POLY1305_SHA256", True),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", True),
        ("DHE-RSA-AES256-GCM-SHA384", True),
        ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", True),
        ("ECDHE-ECDSA-AES128-CCM", True),
        ("TLS_AES_128_CCM_8_SHA256", False),
        ("AES128-GCM-SHA256", False),  # static RSA: no forward secrecy
        ("TLS_RSA_WITH_AES_128_GCM_SHA256", False),
        ("ECDHE-RSA-AES256-SHA384", False),  # CBC
        ("ECDHE-RSA-DES-CBC3-SHA", False),
        ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", False),
        ("ECDHE-RSA-RC4-SHA", False),
        ("ADH-AES128-GCM-SHA256", False),
        ("ECDHE-PSK-CHACHA20-POLY1305", False),
        ("TLS_ECDHE_ECDSA_WITH_NULL_SHA", False),
    ],
)
def test_cipher_strength_table(cipher: str, strong: bool) -> None:
    assert is_strong_cipher(cipher) is strong


def test_client_certificates() -> None:
    want = TransportLayer(TransportConfig(require_client_cert=True))
    d = want.decide(tls_req("198.51.100.1"))
    assert isinstance(d, Reject) and d.reason_label == "client_cert_required"
    with_cert = TlsFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", FP)
    assert want.decide(tls_req("198.51.100.1", with_cert)) == Allow()

    layer = TransportLayer()
    pinned = ExpertFacts("alice", "acme", cert_fingerprints=(FP,))
    assert layer.decide_expert(tls_req("198.51.100.1", with_cert), pinned) == Allow()
    other = TlsFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", "cd" * 32)
    d = layer.decide_expert(tls_req("198.51.100.1", other), pinned)
    assert isinstance(d, Reject) and d.reason_label == "client_cert_mismatch"
    assert d.reason_phrase == "Forbidden - Client Certificate Mismatch"
    # Any one of several registered certificates will do (a phone and a laptop).
    two = ExpertFacts("alice", "acme", cert_fingerprints=("cd" * 32, FP))
    assert layer.decide_expert(tls_req("198.51.100.1", with_cert), two) == Allow()
    assert layer.decide_expert(tls_req("198.51.100.1", other), two) == Allow()
    third = TlsFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", "ef" * 32)
    d = layer.decide_expert(tls_req("198.51.100.1", third), two)
    assert isinstance(d, Reject) and d.reason_label == "client_cert_mismatch"
    d = layer.decide_expert(tls_req("198.51.100.1"), pinned)
    assert isinstance(d, Reject) and d.reason_label == "client_cert_required"
    assert d.reason_phrase == "Forbidden - Client Certificate Required"
    # Loopback without TLS cannot present the pinned certificate either.
    d = layer.decide_expert(RequestFacts("127.0.0.1", "udp", "INVITE"), pinned)
    assert isinstance(d, Reject) and d.reason_label == "client_cert_required"
    assert layer.decide_expert(tls_req("198.51.100.1"), ExpertFacts("bob", "acme")) == Allow()


# -- policy --------------------------------------------------------------------------------------


def test_policy_reason_becomes_a_safe_reason_phrase() -> None:
    layer = PolicyLayer()
    assert layer.decide(PolicyDecision(True)) == Allow()
    d = layer.decide(PolicyDecision(False, "clearance below\r\nevidence\x00 level"))
    assert d == Reject(
        403, "Forbidden - clearance below evidence level", Layer.POLICY, "policy_denied"
    )
    assert isinstance(d := layer.decide(PolicyDecision(False)), Reject)
    assert d.reason_phrase == "Forbidden"
    long = layer.decide(PolicyDecision(False, "x" * 500))
    assert isinstance(long, Reject) and len(long.reason_phrase) < 120


def test_policy_denial_is_labelled_by_its_deciding_policy() -> None:
    d = PolicyLayer().decide(
        PolicyDecision(False, "expert-not-suspended", ("expert-not-suspended", "org-approved"))
    )
    assert d == Reject(
        403,
        "Forbidden - expert-not-suspended",
        Layer.POLICY,
        "expert_not_suspended",
        policy_ids=("expert-not-suspended", "org-approved"),
    )
    # Ids that cannot become a label fall through to the next, then to the generic label.
    assert policy_label(("42", "Within Window!")) == "within_window"
    assert policy_label(("--",)) == "policy_denied"
    audit = RejectionAggregator(60.0)
    (entry,) = audit.add(d, "198.51.100.9", T0)
    assert entry.details()["policy_ids"] == ["expert-not-suspended", "org-approved"]
    other = Reject(403, "Forbidden", Layer.DIGEST, "locked_out")
    (plain,) = audit.add(other, "198.51.100.9", T0)
    assert "policy_ids" not in plain.details()  # other layers keep their exact shape


# -- header hygiene ------------------------------------------------------------------------------


def test_strip_if_headers() -> None:
    h = Headers(
        [
            ("Via", "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK1"),
            ("X-IF-Trace-ID", "forged"),
            ("x-if-signature", "AAAA"),
            ("X-IF-Escalation-ID", "esc-1"),
            ("X-If-Trace-Id", "again"),
            ("X-Other", "kept"),
            ("X-IFX", "not ours: no dash after IF"),
        ]
    )
    removed = strip_if_headers(h, keep=["x-if-escalation-id"])
    assert removed == ["X-IF-Trace-ID", "x-if-signature"]
    assert [n for n, _ in h.items()] == ["Via", "X-IF-Escalation-ID", "X-Other", "X-IFX"]
    assert strip_if_headers(h) == ["X-IF-Escalation-ID"]
    assert strip_if_headers(h) == []


# -- CLI parsing and the pipeline ----------------------------------------------------------------


def test_parse_rate_and_cli_config() -> None:
    assert parse_rate("30/10") == (30, 10.0)
    assert parse_rate("5/300") == (5, 300.0)
    for bad in ("30", "0/10", "3/0", "a/b", "3/-1"):
        with pytest.raises(ValueError):
            parse_rate(bad)
    cfg = SecurityConfig.from_cli(
        flood="100/5", allow=["10.0.0.0/8", "2001:db8::/32"], lockout="3/60", require_tls=False
    )
    assert (cfg.flood.limit, cfg.flood.window, cfg.flood.block) == (100, 5.0, 120.0)
    assert cfg.allow_by_org is not None and len(cfg.allow_by_org["*"]) == 2
    assert (cfg.lockout.failures, cfg.lockout.duration) == (3, 60.0)
    assert cfg.transport.require_tls is False
    assert SecurityConfig.from_cli().allow_by_org is None


ALICE = ExpertFacts("alice", "acme", parse_networks(["198.51.100.0/24"]))


def _pipeline() -> Pipeline:
    cfg = SecurityConfig(
        flood=FloodConfig(limit=3, window=10.0, block=60.0),
        allow_by_org={"acme": parse_networks(["198.51.100.0/24"])},
        lockout=LockoutConfig(failures=2),
    )
    return Pipeline(cfg, MemoryCounters())


def test_pipeline_order_stops_at_first_rejection() -> None:
    calls: list[str] = []

    def authenticate() -> AuthFacts:
        calls.append("auth")
        return AuthFacts(AuthOutcome.OK, "alice", "SHA-256", ALICE)

    def authorize(expert: ExpertFacts) -> PolicyDecision:
        calls.append(f"guard:{expert.expert_id}")
        return PolicyDecision(False, "outside availability window")

    async def body() -> None:
        p = _pipeline()
        # Not allowlisted AND without TLS: the allowlist (layer 2) answers, before transport.
        d = await p.run(RequestFacts("203.0.113.9", "udp", "INVITE"), T0, authenticate=authenticate)
        assert isinstance(d, Reject) and d.layer is Layer.ALLOWLIST
        # Allowlisted without TLS: transport answers; credentials never looked at.
        d = await p.run(
            RequestFacts("198.51.100.9", "udp", "INVITE"), T0, authenticate=authenticate
        )
        assert isinstance(d, Reject) and d.layer is Layer.TRANSPORT
        assert calls == []
        # Flood beats everything: the 4th request from the source in 10 s.
        src = "198.51.100.10"
        for _ in range(3):
            await p.run(RequestFacts(src, "udp", "INVITE"), T0)
        d = await p.run(tls_req(src), T0, authenticate=authenticate)
        assert isinstance(d, Reject) and d.layer is Layer.FLOOD
        assert calls == []
        # All good up to the policy, which says no with its reason.
        d = await p.run(
            tls_req("198.51.100.11"), T0, authenticate=authenticate, authorize=authorize
        )
        assert d == Reject(
            403, "Forbidden - outside availability window", Layer.POLICY, "policy_denied"
        )
        assert calls == ["auth", "guard:alice"]

    asyncio.run(body())


def test_pipeline_identity_stage() -> None:
    async def body() -> None:
        p = _pipeline()
        ok = AuthFacts(AuthOutcome.OK, "alice", "SHA-256", ALICE)
        permit = lambda _e: PolicyDecision(True)  # noqa: E731
        d = await p.run(tls_req("198.51.100.20"), T0, authenticate=lambda: ok, authorize=permit)
        assert d == Allow(ALICE)
        # No credentials yet: a 401 challenge that is not audited.
        d = await p.run(
            tls_req("198.51.100.20"), T0, authenticate=lambda: AuthFacts(AuthOutcome.MISSING)
        )
        assert isinstance(d, Reject) and d.challenge is Challenge.FRESH and not d.audit
        # Lockout after 2 failures, then 403 with the right password.
        failed = AuthFacts(AuthOutcome.FAILED, "alice", "SHA-256")
        src = "198.51.100.21"
        await p.run(tls_req(src), T0, authenticate=lambda: failed)
        d = await p.run(tls_req(src), T0 + 1, authenticate=lambda: failed)
        assert isinstance(d, Reject) and d.reason_label == "locked_out"
        d = await p.run(tls_req(src), T0 + 2, authenticate=lambda: ok)
        assert isinstance(d, Reject) and d.reason_label == "locked_out"
        # Per-expert limit: INVITEs count, in-dialog and other methods do not.
        limited = ExpertFacts(
            "lim", "acme", parse_networks(["198.51.100.0/24"]), calls_per_minute=1
        )
        lim_ok = AuthFacts(AuthOutcome.OK, "lim", "SHA-256", limited)
        d = await p.run(tls_req("198.51.100.30"), T0, authenticate=lambda: lim_ok)
        assert d == Allow(limited)
        d = await p.run(tls_req("198.51.100.31", method="MESSAGE"), T0, authenticate=lambda: lim_ok)
        assert d == Allow(limited)
        d = await p.run(tls_req("198.51.100.32"), T0 + 1, authenticate=lambda: lim_ok)
        assert isinstance(d, Reject) and d.layer is Layer.EXPERT_LIMIT
        assert d.headers == (("Retry-After", "59"),)

    asyncio.run(body())


def test_pipeline_binds_expert_network_and_certificate() -> None:
    async def body() -> None:
        p = Pipeline(
            SecurityConfig(
                allow_by_org={
                    "acme": parse_networks(["198.51.100.0/24"]),
                    "globex": parse_networks(["203.0.113.0/24"]),
                }
            )
        )
        ok = AuthFacts(AuthOutcome.OK, "alice", "SHA-256", ALICE)
        d = await p.run(tls_req("203.0.113.5"), T0, authenticate=lambda: ok)
        assert isinstance(d, Reject) and d.reason_label == "not_expert_network"
        pinned = ExpertFacts("pin", "acme", cert_fingerprints=(FP,))
        pin_ok = AuthFacts(AuthOutcome.OK, "pin", "SHA-256", pinned)
        d = await p.run(tls_req("198.51.100.5"), T0, authenticate=lambda: pin_ok)
        assert isinstance(d, Reject) and d.reason_label == "client_cert_required"
        with_cert = TlsFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", FP)
        d = await p.run(tls_req("198.51.100.5", with_cert), T0, authenticate=lambda: pin_ok)
        assert d == Allow(pinned)
        # Without authenticate (an in-dialog BYE) only layers 1-3 run.
        bye = RequestFacts("198.51.100.5", "tls", "BYE", in_dialog=True, tls=GOOD_TLS)
        assert await p.run(bye, T0) == Allow()

    asyncio.run(body())
