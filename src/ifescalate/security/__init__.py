"""The inbound security pipeline in front of sip/ (ARCHITECTURE.md, "Security pipeline").

Layers (``layers.py``), their order (``pipeline.py``), the counter backends they share
(``counters.py`` in memory, ``redis_counters.py`` across instances), the bounded audit of
rejections (``audit.py``) and header hygiene (``hygiene.py``). ``redis_counters`` is not imported
here so that the in-memory default does not need the redis package loaded.
"""

from .audit import AuditEntry, RejectionAggregator
from .counters import Acquired, Counters, Hit, MemoryCounters
from .facts import (
    Allow,
    AuthFacts,
    AuthOutcome,
    Challenge,
    Decision,
    ExpertFacts,
    Layer,
    PolicyDecision,
    Reject,
    RequestFacts,
    TlsFacts,
)
from .hygiene import strip_if_headers
from .layers import (
    AllowlistLayer,
    DigestLayer,
    ExpertLimitConfig,
    ExpertLimitLayer,
    FloodConfig,
    FloodLayer,
    LockoutConfig,
    PolicyLayer,
    TransportConfig,
    TransportLayer,
    auth_facts,
    is_strong_cipher,
)
from .pipeline import Pipeline, SecurityConfig, parse_rate

__all__ = [
    "Acquired",
    "Allow",
    "AllowlistLayer",
    "AuditEntry",
    "AuthFacts",
    "AuthOutcome",
    "Challenge",
    "Counters",
    "Decision",
    "DigestLayer",
    "ExpertFacts",
    "ExpertLimitConfig",
    "ExpertLimitLayer",
    "FloodConfig",
    "FloodLayer",
    "Hit",
    "Layer",
    "LockoutConfig",
    "MemoryCounters",
    "Pipeline",
    "PolicyDecision",
    "PolicyLayer",
    "Reject",
    "RejectionAggregator",
    "RequestFacts",
    "SecurityConfig",
    "TlsFacts",
    "TransportConfig",
    "TransportLayer",
    "auth_facts",
    "is_strong_cipher",
    "parse_rate",
    "strip_if_headers",
]
