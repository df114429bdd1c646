"""ifescalate: brings a qualified human expert into an AI agent council by voice over SIP."""

__version__ = "0.1.0"
