"""IF.guard: the expert registry, availability, and Cedar policy decisions with reasons.

Build one at start-up::

    registry = SqliteRegistry(data_dir / "ifescalate.db")
    registry.merge(load_yaml(settings.experts_file))
    guard = Guard(registry, PolicyEngine.default())   # refuses to start on an invalid policy set
    for c in guard.candidates("safety", 2, datetime.now(UTC), load):
        ...  # c.permitted, c.rank, c.reasons, c.decision.policy_set_hash
"""

from .availability import AvailabilityWindow, parse_window
from .errors import (
    ExpertNotFound,
    ExpertValidationError,
    GuardError,
    PolicyValidationError,
    RegistryError,
    UnknownHazard,
)
from .match import Candidate, Guard, GuardConfig
from .model import DEFAULT_HAZARDS, WILDCARD, DigestCredentials, Expert, provision_digest
from .policy import Decision, EscalationFacts, PolicyEngine, RequestFacts
from .registry import MergeResult, Registry, SqliteRegistry, load_yaml, parse_yaml

__all__ = [
    "DEFAULT_HAZARDS",
    "WILDCARD",
    "AvailabilityWindow",
    "Candidate",
    "Decision",
    "DigestCredentials",
    "EscalationFacts",
    "Expert",
    "ExpertNotFound",
    "ExpertValidationError",
    "Guard",
    "GuardConfig",
    "GuardError",
    "MergeResult",
    "PolicyEngine",
    "PolicyValidationError",
    "Registry",
    "RegistryError",
    "RequestFacts",
    "SqliteRegistry",
    "UnknownHazard",
    "load_yaml",
    "parse_window",
    "parse_yaml",
    "provision_digest",
]
