"""Calls complete over a lossy path: SIPp -> relay dropping ~20 % each way (seeded) -> `sip answer`.

Only retransmissions can save a call here: SIPp's (INVITE and BYE every 500 ms, the ACK again for a
retransmitted 200) and ours (the 200 to an INVITE until its ACK comes, RFC 3261 section 13.3.1.4; the
stored final response of a server transaction for a retransmitted request, section 17.2). The test
proves both sides' timers worked: SIPp counts its retransmissions, and the relay sees the answerer send
byte-identical datagrams more than once.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from types import TracebackType

import pytest

from tests.interop.test_sip_cli import HOST, Answerer
from tests.peers import SCENARIOS, free_port, run_sipp

pytestmark = pytest.mark.interop

CALLS = 40
LOSS = 0.2
SEED = 4475


class LossyRelay:
    """A UDP relay on loopback between one client and one server, dropping `loss` of the datagrams in
    each direction with a seeded RNG. Runs its own asyncio loop in a thread for a `with` block.

    The client talks to `address`; the server sees every datagram come from one relay socket, and
    what it sends there goes back to the last client address seen (enough for one SIPp).
    """

    def __init__(self, server: tuple[str, int], *, loss: float, seed: int) -> None:
        self.server = server
        self.loss = loss
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.seen: dict[str, set[bytes]] = {"up": set(), "down": set()}
        self.address: tuple[str, int] = (HOST, 0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="lossy-relay", daemon=True
        )
        self._front: asyncio.DatagramTransport | None = None
        self._back: asyncio.DatagramTransport | None = None
        self._client: tuple[str, int] | None = None

    def _pass(self, direction: str, data: bytes) -> bool:
        """Count the datagram (and whether it repeats an earlier one); decide whether it goes through."""
        if data in self.seen[direction]:
            self.counts[f"{direction}_repeated"] += 1
        self.seen[direction].add(data)
        if self.rng.random() < self.loss:
            self.counts[f"{direction}_dropped"] += 1
            return False
        self.counts[f"{direction}_forwarded"] += 1
        return True

    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        self._client = addr
        if self._pass("up", data) and self._back is not None:
            self._back.sendto(data, self.server)

    def _from_server(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._pass("down", data) and self._front is not None and self._client is not None:
            self._front.sendto(data, self._client)

    async def _open(self) -> None:
        front, _ = await self._loop.create_datagram_endpoint(
            lambda: _Side(self._from_client), local_addr=(HOST, 0)
        )
        back, _ = await self._loop.create_datagram_endpoint(
            lambda: _Side(self._from_server), local_addr=(HOST, 0)
        )
        self._front, self._back = front, back
        self.address = front.get_extra_info("sockname")[:2]

    def __enter__(self) -> LossyRelay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(timeout=5)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        def close() -> None:
            for side in (self._front, self._back):
                if side is not None:
                    side.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(close)
        self._thread.join(timeout=5)
        self._loop.close()


class _Side(asyncio.DatagramProtocol):
    def __init__(self, handler: object) -> None:
        self.handler = handler

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.handler(data, addr)  # type: ignore[operator]


def test_calls_complete_through_twenty_percent_loss_each_way() -> None:
    with Answerer(f"udp:{HOST}:0") as answerer:
        with LossyRelay((HOST, answerer.port("udp")), loss=LOSS, seed=SEED) as relay:
            host, port = relay.address
            args = [
                "-sf", str(SCENARIOS / "uac_rport.xml"), f"{host}:{port}", "-s", "bob",
                "-i", HOST, "-p", str(free_port("both")), "-m", str(CALLS), "-r", "10",
                "-l", "40", "-d", "200", "-recv_timeout", "20000", "-max_retrans", "10",
            ]  # fmt: skip
            result = run_sipp(args, timeout=90)
            counts = dict(relay.counts)
        assert answerer.running, answerer.output()
    summary = f"{result.explain()}\nrelay: {counts}"
    print(summary)
    # The relay really dropped in both directions, about as much as asked.
    for direction in ("up", "down"):
        total = counts.get(f"{direction}_dropped", 0) + counts.get(f"{direction}_forwarded", 0)
        assert 0.1 * total <= counts.get(f"{direction}_dropped", 0) <= 0.3 * total, summary
    # Most calls survived (all, normally: a call fails only if every retransmission is lost too).
    assert result.created == CALLS, summary
    assert result.successful >= 0.9 * CALLS, summary
    # Both sides' timers did the work: SIPp retransmitted, and so did the answerer.
    assert result.retransmissions > 0, summary
    assert counts.get("down_repeated", 0) > 0, summary
