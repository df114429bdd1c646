"""Answers for repeated SDP offers without parsing and building each one again.

Load generators, and phones of one model behind one PBX, send byte-identical offers call after
call. The answer to an offer (RFC 3264 §6) depends only on the offer and on our own settings; the
one per-call part is our ``o=`` line, whose session id must be new for every session (RFC 8866
§5.2). So each distinct (offer, settings) pair is parsed and answered once, and later calls only
splice a fresh session id into the cached bytes.

Answers that carry per-call secrets (SDES keys, RFC 4568) must not come from here: there is no
``crypto_answer`` parameter on purpose. An offer that fails to parse or cannot be answered is never
cached, so it raises the same error on every call.
"""

from __future__ import annotations

from collections.abc import Sequence

from .sdp import Codec, build_answer, parse_sdp

__all__ = ["AnswerCache"]

_Entry = tuple[bytes, bytes, bytes, bytes]


class AnswerCache:
    """A bounded map from (offer bytes, address, port, codecs) to the answer with a hole for ``o=``."""

    __slots__ = ("_entries", "maxsize")

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._entries: dict[tuple[bytes, str, int, tuple[Codec, ...]], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def answer(
        self,
        offer: bytes,
        *,
        address: str,
        port: int,
        codecs: Sequence[Codec],
        session_id: int,
    ) -> bytes:
        """The bytes of ``build_answer(parse_sdp(offer), ...)`` with ``session_id`` as id and version.

        Raises what ``parse_sdp`` / ``build_answer`` raise (SipParseError, NotAcceptableHere).
        """
        key = (offer, address, port, tuple(codecs))
        entry = self._entries.get(key)
        if entry is None:
            entry = _template(offer, address, port, codecs)
            if len(self._entries) >= self.maxsize:
                # Many distinct offers means the cache does not help: start over, stay bounded.
                self._entries.clear()
            self._entries[key] = entry
        head, origin_start, origin_end, tail = entry
        sid = b"%d" % session_id
        return b"".join((head, origin_start, sid, b" ", sid, origin_end, tail))


def _template(offer: bytes, address: str, port: int, codecs: Sequence[Codec]) -> _Entry:
    answer = build_answer(parse_sdp(offer), address=address, port=port, codecs=codecs, session_id=0)
    data = answer.to_bytes()
    origin = answer.origin
    line = f"o={origin}\r\n".encode("utf-8", "surrogateescape")
    head, found, tail = data.partition(line)
    if not found:  # pragma: no cover - to_bytes always writes the o= line as str(origin)
        raise AssertionError("o= line not found in the serialized answer")
    start = f"o={origin.username} ".encode("utf-8", "surrogateescape")
    end = f" {origin.nettype} {origin.addrtype} {origin.address}\r\n".encode(
        "utf-8", "surrogateescape"
    )
    return head, start, end, tail
