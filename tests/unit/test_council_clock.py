"""net/room_clock: a real event loop ticking a room every 20 ms from absolute deadlines.

Real time, so bounded (about a second each) and with tolerances for a loaded machine; the schedule
itself (drift-free, catch-up, dropped ticks) is asserted exactly through ticks + skipped.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from ifescalate.council import AgentFormat, AgentParticipant, Council, Role, SipLegParticipant
from ifescalate.net.room_clock import RoomClock


class Recorder:
    """A Tickable that records each tick's ``now`` and can block the loop on a chosen tick."""

    def __init__(self, block_on: int | None = None, block_for: float = 0.0) -> None:
        self.times: list[float] = []
        self.block_on, self.block_for = block_on, block_for

    def tick(self, now: float) -> None:
        self.times.append(now)
        if len(self.times) == self.block_on:
            time.sleep(self.block_for)  # the loop is busy elsewhere: later ticks come late


async def run_for(clock: RoomClock, seconds: float) -> float:
    clock.start()
    start = clock.loop.time()
    await asyncio.sleep(seconds)
    elapsed = clock.loop.time() - start
    clock.stop()
    return elapsed


def test_ticks_every_20_ms_without_drift() -> None:
    async def body() -> None:
        room = Recorder()
        clock = RoomClock(room, asyncio.get_running_loop())
        elapsed = await run_for(clock, 1.0)
        expected = int(elapsed / 0.02) + 1
        # Absolute schedule: every due tick is run (or counted as dropped), none invented.
        assert abs(clock.stats.ticks + clock.stats.skipped - expected) <= 1
        assert clock.stats.ticks >= 40
        # Mostly on time on a quiet loop; the late ones are counted, not hidden.
        assert clock.stats.late <= clock.stats.ticks // 4
        assert all(b >= a for a, b in zip(room.times, room.times[1:], strict=False))

    asyncio.run(asyncio.wait_for(body(), 10))


def test_a_blocked_loop_makes_late_ticks_that_are_caught_up_and_counted() -> None:
    async def body() -> None:
        room = Recorder(block_on=5, block_for=0.07)
        clock = RoomClock(room, asyncio.get_running_loop())
        elapsed = await run_for(clock, 0.5)
        # 70 ms blocked: the next three deadlines pass; they run back to back, each late.
        assert clock.stats.late >= 3
        assert clock.stats.max_lateness >= 0.04
        assert clock.stats.skipped == 0  # within max_catchup=5
        catch_up = [b - a for a, b in zip(room.times[5:9], room.times[6:10], strict=False)]
        assert sum(1 for gap in catch_up if gap < 0.002) >= 2
        assert abs(clock.stats.ticks - (int(elapsed / 0.02) + 1)) <= 1

    asyncio.run(asyncio.wait_for(body(), 10))


def test_ticks_missed_beyond_max_catchup_are_dropped() -> None:
    async def body() -> None:
        room = Recorder(block_on=2, block_for=0.2)
        clock = RoomClock(room, asyncio.get_running_loop(), max_catchup=3)
        elapsed = await run_for(clock, 0.4)
        assert clock.stats.skipped >= 5
        assert abs(clock.stats.ticks + clock.stats.skipped - (int(elapsed / 0.02) + 1)) <= 1

    asyncio.run(asyncio.wait_for(body(), 10))


def test_stop_from_after_tick_and_a_failing_room_stops_the_clock() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        room = Recorder()
        clock: RoomClock
        calls: list[int] = []

        def after() -> None:
            calls.append(len(room.times))
            if len(calls) == 3:
                clock.stop()

        clock = RoomClock(room, loop, after_tick=after)
        clock.start()
        await asyncio.sleep(0.2)
        assert len(calls) == 3 and not clock.running

        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))

        class Broken:
            def tick(self, now: float) -> None:
                raise RuntimeError("mixer blew up")

        broken = RoomClock(Broken(), loop)
        broken.start()
        await asyncio.sleep(0.1)
        assert not broken.running
        assert len(errors) == 1 and str(errors[0]["exception"]) == "mixer blew up"

    asyncio.run(asyncio.wait_for(body(), 10))


def test_clock_drives_a_room_and_dispatches_its_events() -> None:
    """Expert tone in through a SIP leg at 8 kHz, out to an agent at 16 kHz, on real time."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        events: list[str] = []
        council = Council(announcement=(), on_event=lambda e: events.append(e.type.value))
        council.open_room("esc-9")
        expert = SipLegParticipant("expert")
        agent = AgentParticipant("agent", Role.AGENT, AgentFormat.PCM16_16000)
        council.join("esc-9", expert, loop.time())
        council.join("esc-9", agent, loop.time())
        n = 0

        def feed() -> None:
            nonlocal n
            t = (n + np.arange(160)) / 8000
            n += 160
            expert.sink(np.rint(8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16))
            council.dispatch("esc-9")

        clock = RoomClock(council.get("esc-9"), loop, after_tick=feed)
        await run_for(clock, 0.5)
        frames = []
        while (frame := agent.pull_output()) is not None:
            frames.append(frame)
        assert len(frames) == 10  # the queue kept the newest 200 ms
        assert agent.output.dropped == clock.stats.ticks - 10
        samples = np.concatenate(frames).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
        peak_hz = np.argmax(spectrum) * 16000 / samples.size
        assert abs(peak_hz - 440) < 10
        assert events[:2] == ["PARTICIPANT_JOINED", "PARTICIPANT_JOINED"]
        assert "SPEAKING_STARTED" in events

    asyncio.run(asyncio.wait_for(body(), 10))


def test_a_driven_rtp_leg_ticks_with_the_room_and_gets_its_own_clock_back() -> None:
    """A bridged session sends and receives inside the room's ticks (no clock of its own), and
    resumes its own clock when the room clock stops or lets it go."""
    from ifescalate.net.rtp import MediaConfig, MediaSession, RtpPortPool
    from ifescalate.sip.sdp import PCMU, TELEPHONE_EVENT

    async def body() -> None:
        loop = asyncio.get_running_loop()
        pool = RtpPortPool(41790, 41799)
        config = MediaConfig(no_media_timeout=0.0, srtp="off")
        serve = MediaSession(loop, pool, "127.0.0.1", config=config)
        phone = MediaSession(loop, pool, "127.0.0.1", config=config)
        offer = serve.offer(
            address="127.0.0.1", codecs=(PCMU, TELEPHONE_EVENT), session_id=1, secure=False
        )
        serve.accept_answer(
            phone.answer(offer, address="127.0.0.1", codecs=(PCMU, TELEPHONE_EVENT), session_id=2)
        )
        council = Council(announcement=())
        room = council.open_room("esc")
        leg = SipLegParticipant("expert")
        agent = AgentParticipant("agent", Role.AGENT, AgentFormat.PCM16_16000)
        council.join("esc", leg, loop.time())
        council.join("esc", agent, loop.time())
        serve.sink, serve.source = leg.sink, leg.pull_output
        heard: list[np.ndarray] = []
        phone.sink = heard.append
        tone = np.rint(8000 * np.sin(2 * np.pi * 1000 * np.arange(320) / 16000)).astype(np.int16)
        clock = RoomClock(room, loop)
        try:
            serve.start()
            phone.start()
            clock.start()
            clock.drive(serve)
            for _ in range(25):  # 0.5 s of agent speech through the room to the phone
                agent.push_input(tone)
                await asyncio.sleep(0.02)
            assert serve.clock_stats.ticks == 0  # no tick of its own while driven
            assert serve.counters.sent >= 20 and clock.stats.ticks >= 20
            assert max(int(np.abs(f).max()) for f in heard) > 4000  # the agent reached the phone
            clock.stop()  # the bridge closes before the call ends: RTP goes on
            sent = serve.counters.sent
            await asyncio.sleep(0.2)
            assert serve.clock_stats.ticks >= 5 and serve.counters.sent >= sent + 5
            clock.start()
            clock.drive(serve)
            serve.on_close.append(lambda: clock.release(serve))  # as escalation/bridge.py does
            serve.close()  # the call ended while bridged: the clock lets go
            assert clock._legs == [] and clock.running
        finally:
            clock.stop()
            serve.close()
            phone.close()

    asyncio.run(asyncio.wait_for(body(), 10))
