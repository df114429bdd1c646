"""IF.guard errors. Each names what was wrong so an operator can fix the file or the command."""

from __future__ import annotations

__all__ = [
    "ExpertNotFound",
    "ExpertValidationError",
    "GuardError",
    "PolicyValidationError",
    "RegistryError",
    "UnknownHazard",
]


class GuardError(Exception):
    """Base class for IF.guard errors."""


class ExpertValidationError(GuardError, ValueError):
    """An expert record (from YAML, the CLI or the database) is malformed."""


class RegistryError(GuardError):
    """The registry cannot do what was asked (duplicate id, unreadable file, ...)."""


class ExpertNotFound(RegistryError, KeyError):
    """No expert with that id."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0]) if self.args else "expert not found"


class PolicyValidationError(GuardError):
    """The Cedar policy set or schema is invalid: the guard refuses to start.

    ``policy_ids`` names the offending policies by their ``@id`` annotation when known.
    """

    def __init__(self, message: str, policy_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.policy_ids = policy_ids


class UnknownHazard(GuardError, ValueError):
    """The escalation names a hazard that is not in the configured hazard list."""
