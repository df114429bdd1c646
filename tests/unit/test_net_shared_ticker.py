"""net/room_clock.SharedTicker: many deadlines behind one loop timer (real loop, short runs)."""

from __future__ import annotations

import asyncio
from typing import Any

from ifescalate.net.room_clock import EARLY, RoomClock, SharedTicker


def test_deadlines_run_in_order_once_each_and_cancel_works() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        ticker = SharedTicker(loop)
        ran: list[tuple[str, float]] = []
        start = loop.time()
        for name, delay in (("c", 0.03), ("a", 0.01), ("b", 0.02), ("x", 0.015)):

            def record(name: str = name) -> None:
                ran.append((name, loop.time()))

            handle = ticker.call_at(start + delay, record)
            if name == "x":
                handle.cancel()
        await asyncio.sleep(0.06)
        assert [name for name, _ in ran] == ["a", "b", "c"]
        # Never earlier than EARLY before the deadline (the loop clock's resolution).
        for (_, at), delay in zip(ran, (0.01, 0.02, 0.03), strict=True):
            assert at >= start + delay - EARLY - 1e-9
        assert len(ticker) == 0

    asyncio.run(asyncio.wait_for(body(), 5))


def test_one_wake_up_runs_every_deadline_due_within_early() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        ticker = SharedTicker(loop)
        fired: list[int] = []
        at = loop.time() + 0.01
        timers_before = len(loop._scheduled)  # type: ignore[attr-defined]
        for i in range(50):
            ticker.call_at(at + i * EARLY / 100, lambda i=i: fired.append(i))
        # One loop timer for the fifty deadlines.
        assert len(loop._scheduled) - timers_before == 1  # type: ignore[attr-defined]
        await asyncio.sleep(0.03)
        assert fired == list(range(50))

    asyncio.run(asyncio.wait_for(body(), 5))


def test_rescheduling_from_a_callback_waits_for_the_next_wake_up() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        ticker = SharedTicker(loop)
        count = [0]

        def again() -> None:  # re-arms at a deadline already past: must not starve the loop
            count[0] += 1
            if count[0] < 1000:
                ticker.call_at(loop.time() - 1.0, again)

        ticker.call_at(loop.time(), again)
        await asyncio.sleep(0)
        assert count[0] < 1000  # the loop got control back between runs
        await asyncio.sleep(0.2)
        assert count[0] == 1000

    asyncio.run(asyncio.wait_for(body(), 5))


def test_a_raising_callback_reaches_the_loop_and_the_others_keep_running() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        ticker = SharedTicker(loop)
        ran: list[str] = []

        def boom() -> None:
            raise RuntimeError("boom")

        at = loop.time() + 0.01
        ticker.call_at(at, boom)
        ticker.call_at(at, lambda: ran.append("after"))
        await asyncio.sleep(0.05)
        assert ran == ["after"]
        assert len(errors) == 1 and str(errors[0]["exception"]) == "boom"

    asyncio.run(asyncio.wait_for(body(), 5))


def test_room_clocks_of_one_loop_share_its_ticker() -> None:
    class Count:
        def __init__(self) -> None:
            self.n = 0

        def tick(self, now: float) -> None:
            self.n += 1

    async def body() -> None:
        loop = asyncio.get_running_loop()
        rooms = [Count() for _ in range(20)]
        timers_before = len(loop._scheduled)  # type: ignore[attr-defined]
        clocks = [RoomClock(room, loop) for room in rooms]
        for clock in clocks:
            clock.start()
        assert SharedTicker.for_loop(loop) is clocks[0]._ticker
        assert len(loop._scheduled) - timers_before == 1  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)
        for clock in clocks:
            clock.stop()
        assert all(9 <= room.n <= 12 for room in rooms)

    asyncio.run(asyncio.wait_for(body(), 5))
