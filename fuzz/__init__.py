"""Fuzzing the inbound parsers: SIP messages, stream framing, header grammars, digest, SDP, RTP.

The invariant for every target: an input either parses or raises the project's own error
(``SipError`` for SIP, ``MediaError`` for media); never another exception, never more than a
second of CPU for one input, never unbounded memory.

- :mod:`fuzz.corpus` finds the RFC 4475 torture messages and builds the seeds.
- :mod:`fuzz.mutate` mutates inputs (byte flips, splices, CRLF games, Content-Length lies, ...).
- :mod:`fuzz.targets` is the list of targets and what each may raise.
- :mod:`fuzz.engine` runs a bounded, feedback-driven loop and saves violations to ``fuzz/crashes``.
- ``python -m fuzz.run`` runs it from the command line; ``fuzz/fuzz_sip.py`` is the atheris
  (libFuzzer) entry point for coverage-guided runs where atheris is installed.
"""
