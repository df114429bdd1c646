"""Transaction matching (RFC 3261 §17.1.3, §17.2.3, §9.2, §8.2.2.2) and the transaction table.

Keys are plain tuples of strings so a dict lookup is all a match costs. The top Via is parsed once per
message with a few ``str`` operations rather than a full typed-header parse, because this runs for
every datagram.

Key shapes:

* client: ``(branch, cseq_method)`` (§17.1.3). A CANCEL has its own transaction because its CSeq
  method differs from the INVITE's.
* server, RFC 3261 peers (branch starts with the magic cookie, §17.2.3): ``(branch, sent_by,
  method)`` where an ACK uses ``INVITE`` so it finds the INVITE server transaction.
* server, RFC 2543 peers (no magic cookie): ``("", request_uri, from_tag, call_id, cseq_number,
  method, top_via, to_tag)``. For INVITE and ACK the To tag is left out of the key (the INVITE had
  none, the ACK carries the tag of our response) and checked after the lookup instead (§17.2.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias, cast

from .build import MAGIC_COOKIE
from .errors import SipParseError
from .message import Request, Response

if TYPE_CHECKING:
    from .transaction import (
        ClientInviteTransaction,
        ClientNonInviteTransaction,
        ServerInviteTransaction,
        ServerNonInviteTransaction,
    )

    ClientTx: TypeAlias = ClientInviteTransaction | ClientNonInviteTransaction
    ServerTx: TypeAlias = ServerInviteTransaction | ServerNonInviteTransaction

TxKey = tuple[str, ...]

#: Marks an RFC 2543 server key, whose first element can never be a real branch.
_RFC2543 = ""


def parse_top_via(message: Request | Response) -> tuple[str, str, str]:
    """``(branch, sent_by, raw_top_via)`` of the top Via (§20.42); sent-by is lowercased.

    Via = sent-protocol LWS sent-by *( SEMI via-params ); the branch is "" when absent.
    """
    via = message.headers.first("Via")
    if not via:
        raise SipParseError("missing Via header")
    known = _TOP_VIAS.get(via)
    if known is None:
        known = _parse_top_via(via)
        if len(_TOP_VIAS) >= _TOP_VIAS_MAX:
            _TOP_VIAS.clear()
        _TOP_VIAS[via] = known
    return known


# parse_top_via results by Via value: one request's top Via is keyed two or three times (lookup,
# new transaction, merge check) and its ACK/CANCEL/retransmissions repeat it. Bounded.
_TOP_VIAS: dict[str, tuple[str, str, str]] = {}
_TOP_VIAS_MAX = 8192


def _parse_top_via(via: str) -> tuple[str, str, str]:
    head, _, params = via.partition(";")
    slash = head.rfind("/")
    parts = head[slash + 1 :].split(None, 1)
    if slash < 0 or len(parts) != 2:
        raise SipParseError(f"malformed Via: {via!r}")
    # sent-by = host [ COLON port ] where COLON may carry whitespace (§25.1).
    sent_by = "".join(parts[1].split()).lower()
    branch = ""
    if params:
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "branch":
                branch = value.strip()
                break
    return branch, sent_by, via.strip()


# header_tag results by value (a call's From/To recur in each of its messages); bounded.
_TAGS: dict[str, str] = {}
_TAGS_MAX = 8192


def header_tag(value: str | None) -> str:
    """The ``tag`` parameter of a From or To value, "" when absent (§19.3).

    In name-addr form the header parameters follow ``>``; in addr-spec form the URI cannot carry
    parameters (§20.10), so everything after the first ``;`` is a header parameter.
    """
    if not value:
        return ""
    tag = _TAGS.get(value)
    if tag is None:
        tag = _header_tag(value)
        if len(_TAGS) >= _TAGS_MAX:
            _TAGS.clear()
        _TAGS[value] = tag
    return tag


def _header_tag(value: str) -> str:
    gt = value.rfind(">")
    tail = value[gt + 1 :] if gt >= 0 else value
    semi = tail.find(";")
    if semi < 0:
        return ""
    for param in tail[semi + 1 :].split(";"):
        name, _, tag = param.partition("=")
        if name.strip().lower() == "tag":
            return tag.strip()
    return ""


def _cseq_method(message: Request | Response) -> str:
    return message.cseq[1]


def client_key(message: Request | Response) -> TxKey:
    """Client transaction key of our request or of a response to it (§17.1.3)."""
    branch = parse_top_via(message)[0]
    method = message.method if isinstance(message, Request) else _cseq_method(message)
    return (branch, method)


def _server_key(request: Request, method: str) -> TxKey:
    branch, sent_by, raw = parse_top_via(request)
    if branch.startswith(MAGIC_COOKIE):
        return (branch, sent_by, method)
    # §17.2.3 backwards compatibility with RFC 2543: match on the request's identifying fields.
    to_tag = "" if method == "INVITE" else header_tag(request.headers.get("To"))
    return (
        _RFC2543,
        request.uri,
        header_tag(request.headers.get("From")),
        request.call_id,
        str(request.cseq[0]),
        method,
        raw,
        to_tag,
    )


def server_key(request: Request) -> TxKey:
    """Server transaction key of a request (§17.2.3); an ACK maps to its INVITE's key."""
    method = request.method
    return _server_key(request, "INVITE" if method == "ACK" else method)


def is_rfc2543_key(key: TxKey) -> bool:
    """True for a key built by the RFC 2543 fallback (branch without the magic cookie)."""
    return key[0] == _RFC2543


OriginKey = tuple[str, str, str, str]


def _origin_key(request: Request) -> OriginKey:
    """From tag, Call-ID and CSeq: what §8.2.2.2 compares to detect a merged request."""
    seq, method = request.cseq
    return (header_tag(request.headers.get("From")), request.call_id, str(seq), method)


class TransactionTable:
    """Client and server transactions by key; finds the one a message belongs to.

    The owner removes a transaction when it reports ``Terminated`` (``remove``); lookups also drop
    terminated entries they trip over, and ``purge`` sweeps the rest.
    """

    __slots__ = ("_clients", "_origins", "_servers")

    def __init__(self) -> None:
        self._clients: dict[TxKey, ClientTx] = {}
        # Each server transaction with the §8.2.2.2 origin key it was indexed under (None if it had
        # a To tag), so removal does not parse headers again.
        self._servers: dict[TxKey, tuple[ServerTx, OriginKey | None]] = {}
        self._origins: dict[OriginKey, ServerTx] = {}

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def server_count(self) -> int:
        return len(self._servers)

    def add_client(self, tx: ClientTx) -> None:
        """Store a client transaction under its key; a live duplicate key is a bug of the caller."""
        old = self._clients.get(tx.key)
        if old is not None and old is not tx and not old.terminated:
            raise ValueError(f"client transaction key already in use: {tx.key!r}")
        self._clients[tx.key] = tx

    def add_server(self, tx: ServerTx) -> None:
        """Store a server transaction; requests without a To tag are indexed for §8.2.2.2."""
        entry = self._servers.get(tx.key)
        if entry is not None and entry[0] is not tx and not entry[0].terminated:
            raise ValueError(f"server transaction key already in use: {tx.key!r}")
        request = tx.request
        origin = None if header_tag(request.headers.get("To")) else _origin_key(request)
        self._servers[tx.key] = (tx, origin)
        if origin is not None:
            self._origins[origin] = tx

    def remove(self, tx: ClientTx | ServerTx) -> None:
        """Forget ``tx`` (idempotent)."""
        if self._clients.get(tx.key) is tx:
            del self._clients[tx.key]
            return
        entry = self._servers.get(tx.key)
        if entry is not None and entry[0] is tx:
            del self._servers[tx.key]
            origin = entry[1]
            if origin is not None and self._origins.get(origin) is tx:
                del self._origins[origin]

    def match_response(self, response: Response) -> ClientTx | None:
        """The client transaction a response belongs to (§17.1.3), or None (stray response)."""
        try:
            key = client_key(response)
        except SipParseError:
            return None
        tx = self._clients.get(key)
        if tx is not None and tx.terminated:
            self.remove(tx)
            return None
        return tx

    def match_request(self, request: Request) -> ServerTx | None:
        """The server transaction a request belongs to (§17.2.3), or None (a new transaction).

        An ACK finds the INVITE server transaction; with an RFC 2543 branch its To tag must also be
        the one our response carried.
        """
        tx = self._lookup_server(server_key(request))
        if (
            tx is not None
            and request.method == "ACK"
            and is_rfc2543_key(tx.key)
            and header_tag(request.headers.get("To")) != tx.to_tag
        ):
            return None
        return tx

    def match_cancel(self, cancel: Request) -> ServerInviteTransaction | None:
        """The INVITE server transaction a CANCEL targets (§9.2): same key with method INVITE."""
        tx = self._lookup_server(_server_key(cancel, "INVITE"))
        # Only an INVITE server transaction can own a key whose method is INVITE.
        return cast("ServerInviteTransaction | None", tx)

    def is_merged(self, request: Request) -> bool:
        """§8.2.2.2: no To tag, same From tag, Call-ID and CSeq as a live transaction, other key.

        The caller answers such a request with 482 (Loop Detected).
        """
        if request.method == "ACK" or header_tag(request.headers.get("To")):
            return False
        tx = self._origins.get(_origin_key(request))
        if tx is None:
            return False
        if tx.terminated:
            self.remove(tx)
            return False
        return tx.key != server_key(request)

    def purge(self) -> int:
        """Drop every terminated transaction; return how many were dropped."""
        dead: list[ClientTx | ServerTx] = [tx for tx in self._clients.values() if tx.terminated]
        dead.extend(tx for tx, _ in self._servers.values() if tx.terminated)
        for tx in dead:
            self.remove(tx)
        return len(dead)

    def _lookup_server(self, key: TxKey) -> ServerTx | None:
        entry = self._servers.get(key)
        if entry is None:
            return None
        tx = entry[0]
        if tx.terminated:
            self.remove(tx)
            return None
        return tx
