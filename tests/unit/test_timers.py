"""net.timers.TimerHeap: one loop timer for many sans-IO deadlines, in virtual and real time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable
from typing import Any, cast

from ifescalate.net.timers import Timed, TimerHeap


class _Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualLoop:
    """The two loop methods TimerHeap uses, over a virtual clock (the loop is not under test)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._handles: list[tuple[float, int, _Handle]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle(when, callback)
        heapq.heappush(self._handles, (when, next(self._seq), handle))
        return handle

    @property
    def pending(self) -> list[float]:
        return sorted(h.when for _, _, h in self._handles if not h.cancelled)

    def advance(self, to: float) -> None:
        while self._handles and self._handles[0][0] <= to:
            when, _, handle = heapq.heappop(self._handles)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            handle.callback()
        self.now = to


class Machine:
    """A sans-IO state machine stand-in: a list of deadlines it walks through as they fire."""

    def __init__(self, name: str, deadlines: list[float], log: list[tuple[float, str]]) -> None:
        self.name = name
        self.deadlines = list(deadlines)
        self.log = log
        self.timed = Timed(self.get_timer, self.fire)

    def get_timer(self) -> float | None:
        return self.deadlines[0] if self.deadlines else None

    def fire(self, now: float) -> None:
        assert self.deadlines and now >= self.deadlines[0], f"{self.name} fired early at {now}"
        self.log.append((now, self.name))
        self.deadlines.pop(0)


def _heap() -> tuple[VirtualLoop, TimerHeap]:
    loop = VirtualLoop()
    return loop, TimerHeap(cast(Any, loop))


def test_machines_fire_in_deadline_order_and_re_arm_themselves() -> None:
    loop, heap = _heap()
    log: list[tuple[float, str]] = []
    a = Machine("a", [3.0, 7.0], log)
    b = Machine("b", [1.0, 5.0], log)
    c = Machine("c", [2.0], log)
    for m in (a, b, c):
        heap.arm(m.timed)
    assert loop.pending == [1.0]  # one loop timer, for the earliest deadline
    loop.advance(10.0)
    assert log == [(1.0, "b"), (2.0, "c"), (3.0, "a"), (5.0, "b"), (7.0, "a")]


def test_nothing_fires_before_its_deadline() -> None:
    loop, heap = _heap()
    log: list[tuple[float, str]] = []
    heap.arm(Machine("a", [2.0], log).timed)
    loop.advance(1.999)
    assert log == []
    loop.advance(2.0)
    assert log == [(2.0, "a")]


def test_rearming_earlier_moves_the_loop_timer() -> None:
    loop, heap = _heap()
    log: list[tuple[float, str]] = []
    m = Machine("a", [5.0], log)
    heap.arm(m.timed)
    m.deadlines = [1.0]
    heap.arm(m.timed)
    assert loop.pending == [1.0]
    loop.advance(10.0)
    assert log == [(1.0, "a")]  # the stale 5.0 entry does not fire a second time


def test_rearming_later_skips_the_stale_entry() -> None:
    loop, heap = _heap()
    log: list[tuple[float, str]] = []
    m = Machine("a", [1.0], log)
    heap.arm(m.timed)
    m.deadlines = [4.0]
    heap.arm(m.timed)
    loop.advance(2.0)
    assert log == []
    loop.advance(10.0)
    assert log == [(4.0, "a")]


def test_disarm_and_none_deadline_stop_a_machine() -> None:
    loop, heap = _heap()
    log: list[tuple[float, str]] = []
    a = Machine("a", [1.0], log)
    b = Machine("b", [1.0], log)
    heap.arm(a.timed)
    heap.arm(b.timed)
    heap.disarm(a.timed)
    b.deadlines = []
    heap.arm(b.timed)
    loop.advance(10.0)
    assert log == []


def test_disarm_then_arm_at_the_same_deadline_fires_once() -> None:
    loop, heap = _heap()
    log: list[tuple[float, str]] = []
    m = Machine("a", [1.0], log)
    heap.arm(m.timed)
    heap.disarm(m.timed)
    heap.arm(m.timed)
    loop.advance(5.0)
    assert log == [(1.0, "a")]


def test_arming_twice_with_the_same_deadline_pushes_once() -> None:
    _, heap = _heap()
    m = Machine("a", [1.0], [])
    heap.arm(m.timed)
    heap.arm(m.timed)
    assert len(heap) == 1


def test_a_machine_arming_another_from_its_fire_callback() -> None:
    loop, heap = _heap()
    log: list[tuple[float, str]] = []
    late = Machine("late", [2.0], log)

    class Starter(Machine):
        def fire(self, now: float) -> None:
            super().fire(now)
            heap.arm(late.timed)

    starter = Starter("starter", [1.0], log)
    heap.arm(starter.timed)
    loop.advance(5.0)
    assert log == [(1.0, "starter"), (2.0, "late")]


def test_many_timers_fire_in_order_exactly_once() -> None:
    loop, heap = _heap()
    log: list[tuple[float, str]] = []
    rng = random.Random(7)
    machines = [
        Machine(f"m{i}", sorted(rng.uniform(0, 100) for _ in range(3)), log) for i in range(2000)
    ]
    expected = sorted((d, m.name) for m in machines for d in m.deadlines)
    for m in machines:
        heap.arm(m.timed)
    # Half the machines move their first deadline (earlier or later) before anything fires.
    for m in machines[::2]:
        m.deadlines[0] = rng.uniform(0, m.deadlines[1])
        heap.arm(m.timed)
    expected = sorted((d, m.name) for m in machines for d in m.deadlines)
    loop.advance(200.0)
    assert log == expected
    assert len(loop.pending) == 0


def test_close_cancels_the_loop_timer() -> None:
    loop, heap = _heap()
    log: list[tuple[float, str]] = []
    heap.arm(Machine("a", [1.0], log).timed)
    heap.close()
    loop.advance(5.0)
    assert log == []
    assert len(heap) == 0


def test_on_a_real_event_loop() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        heap = TimerHeap(loop)
        order: list[str] = []
        done = loop.create_future()
        start = loop.time()

        def make(name: str, delay: float) -> Timed:
            fired = False

            def get() -> float | None:
                return None if fired else start + delay

            def fire(now: float) -> None:
                nonlocal fired
                assert now >= start + delay
                fired = True
                order.append(name)
                if len(order) == 3:
                    done.set_result(None)

            return Timed(get, fire)

        for name, delay in (("c", 0.03), ("a", 0.01), ("b", 0.02)):
            heap.arm(make(name, delay))
        await asyncio.wait_for(done, 2.0)
        heap.close()
        return order

    assert asyncio.run(main()) == ["a", "b", "c"]


def test_arming_after_close_schedules_again() -> None:
    loop, heap = _heap()
    log: list[tuple[float, str]] = []
    heap.arm(Machine("a", [1.0], log).timed)
    heap.close()
    heap.arm(Machine("b", [2.0], log).timed)
    loop.advance(5.0)
    assert log == [(2.0, "b")]
