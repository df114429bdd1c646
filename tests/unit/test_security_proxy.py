"""security.proxy: X-IF-Source is believed only from a trusted proxy over an unforgeable hop, and
the layers then act on the caller while the transport layer still judges the hop."""

from __future__ import annotations

import pytest

from ifescalate.security import (
    AllowlistLayer,
    ExpertFacts,
    Layer,
    RejectionAggregator,
    RequestFacts,
    TransportLayer,
)
from ifescalate.security.facts import Reject, parse_networks
from ifescalate.security.proxy import (
    BAD_SOURCE,
    Origin,
    origin,
    parse_source_header,
    proxy_may_vouch,
)

EDGE = parse_networks(["127.0.0.1/32", "10.0.0.0/24"])


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("udp:192.0.2.7:5060", "192.0.2.7"),
        ("TLS:198.51.100.1:5061", "198.51.100.1"),
        ("tcp:2001:db8::1:5060", "2001:db8::1"),
        ("tcp:[2001:db8::1]:5060", "2001:db8::1"),
        ("udp:::ffff:192.0.2.9:5060", "192.0.2.9"),
    ],
)
def test_parse_source_header(value: str, address: str) -> None:
    assert parse_source_header(value) == address


@pytest.mark.parametrize(
    "value",
    ["192.0.2.7", "udp:192.0.2.7", "carrier-pigeon:192.0.2.7:5060", "udp:evil.example:5060",
     "udp:192.0.2.7:0", "udp:192.0.2.7:70000", "udp:192.0.2.7:port", ""],
)  # fmt: skip
def test_malformed_source_header(value: str) -> None:
    with pytest.raises(ValueError, match="X-IF-Source"):
        parse_source_header(value)


def test_only_trusted_proxies_over_unforgeable_hops_vouch() -> None:
    assert proxy_may_vouch("10.0.0.5", "tls", EDGE)
    assert proxy_may_vouch("10.0.0.5", "TCP", EDGE)
    assert not proxy_may_vouch("10.0.0.5", "udp", EDGE)  # a datagram's source can be forged
    assert proxy_may_vouch("127.0.0.1", "udp", EDGE)  # ... but not a loopback one from outside
    assert not proxy_may_vouch("10.0.1.5", "tls", EDGE)
    assert not proxy_may_vouch("127.0.0.1", "udp", ())


def test_origin() -> None:
    claim = ["udp:192.0.2.7:5060"]
    assert origin("10.0.0.5", "tls", claim, EDGE) == Origin("192.0.2.7", "10.0.0.5")
    assert origin("10.0.0.5", "tls", [], EDGE) == Origin("10.0.0.5")  # the proxy's own probe
    assert origin("203.0.113.9", "tls", claim, EDGE) == Origin("203.0.113.9")  # a forger
    assert origin("10.0.0.5", "udp", claim, EDGE) == Origin("10.0.0.5")
    assert origin("10.0.0.5", "tls", ["udp:nonsense"], EDGE) is BAD_SOURCE
    assert origin("10.0.0.5", "tls", [*claim, *claim], EDGE) is BAD_SOURCE
    assert isinstance(BAD_SOURCE, Reject) and BAD_SOURCE.status == 400


def test_layers_act_on_the_caller_and_the_transport_on_the_hop() -> None:
    facts = RequestFacts("192.0.2.7", "udp", "INVITE", proxy="127.0.0.1")
    allow = AllowlistLayer({"lab": ["192.0.2.0/24"]})
    assert allow.decide(facts).allowed
    assert not allow.decide(RequestFacts("127.0.0.1", "udp", "INVITE")).allowed
    expert = ExpertFacts("erin", "lab", networks=parse_networks(["198.51.100.0/24"]))
    assert not AllowlistLayer(None).decide_expert(facts, expert).allowed
    # The hop from a loopback proxy is not "plain SIP off loopback"; a remote one in clear is.
    assert TransportLayer().decide(facts).allowed
    remote_hop = RequestFacts("192.0.2.7", "tcp", "INVITE", proxy="10.0.0.5")
    assert not TransportLayer().decide(remote_hop).allowed


def test_audit_names_the_caller_and_the_proxy() -> None:
    agg = RejectionAggregator(60.0)
    refused = Reject(403, "Forbidden - IP Not Allowlisted", Layer.ALLOWLIST, "not_allowlisted")
    (entry,) = agg.add(refused, "192.0.2.7", 0.0, proxy="127.0.0.1")
    assert entry.details()["source"] == "192.0.2.7"
    assert entry.details()["proxy"] == "127.0.0.1"
    (direct,) = agg.add(refused, "192.0.2.8", 0.0)
    assert "proxy" not in direct.details()  # direct callers' entries keep their exact shape
