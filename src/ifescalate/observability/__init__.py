"""Observability: Prometheus metrics (one :class:`Metrics` per process) and structured JSON logs."""

from .logging import JsonFormatter, log_context, setup_logging
from .metrics import CONTENT_TYPE, Metrics

__all__ = ["CONTENT_TYPE", "JsonFormatter", "Metrics", "log_context", "setup_logging"]
