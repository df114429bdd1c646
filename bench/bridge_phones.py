"""The "phones" of bench/bridge_bench.py part (b): a separate process, pinned to the core the
product does not use, with one UDP socket that sends each call a pre-encoded G.711 RTP packet every
20 ms on the call's own clock and drains what the calls send back. Split from bridge_bench.py (one
concept per module); ``spawn`` starts it, so it imports nothing of the product's state."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import socket
import struct
import time
from multiprocessing.connection import Connection

import numpy as np

from ifescalate.media.g711 import ulaw_encode

HOST = "127.0.0.1"
TONE_AMPLITUDE = 8000  # the phones' 440 Hz tone, as loud as the latency bench's bursts


def drain(sock: socket.socket) -> None:
    """Read and drop what the serve sessions send the phone (the kernel would drop it anyway)."""
    for _ in range(4096):
        try:
            sock.recv(2048)
        except (BlockingIOError, InterruptedError):
            return


def _phone_packets() -> bytes:
    tone = np.rint(TONE_AMPLITUDE * np.sin(2 * np.pi * 440 * np.arange(160) / 8000)).astype(
        np.int16
    )
    return ulaw_encode(tone)


def phones_main(conn: Connection, cpu: int | None) -> None:
    """The phones' process: pinned to ``cpu``; commands over ``conn`` (see :class:`Phones`)."""
    if cpu is not None:
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(0, {cpu})
    import uvloop

    uvloop.run(_phones_async(conn))


async def _phones_async(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((HOST, 0))
    payload = _phone_packets()
    handles: list[asyncio.Handle] = []
    done = asyncio.Event()

    def add(port: int) -> None:
        # The phone's own 20 ms clock, started when the call is (a random phase, as in life).
        start = loop.time()
        state = [0, 0]  # frame index, RTP sequence number
        slot = len(handles)
        handles.append(loop.call_soon(lambda: None))

        def tick() -> None:
            state[1] = (state[1] + 1) & 0xFFFF
            ts = (state[0] * 160) & 0xFFFFFFFF
            header = struct.pack("!BBHII", 0x80, 0, state[1], ts, 0x1234)
            with contextlib.suppress(OSError):
                sock.sendto(header + payload, (HOST, port))
            state[0] += 1
            handles[slot] = loop.call_at(start + state[0] * 0.02, tick)

        tick()

    def command() -> None:
        while conn.poll():
            msg = conn.recv()
            if msg[0] == "add":
                add(msg[1])
            elif msg[0] == "cpu":
                conn.send(time.process_time())
            else:
                done.set()
                return

    loop.add_reader(sock.fileno(), drain, sock)
    loop.add_reader(conn.fileno(), command)
    conn.send(sock.getsockname()[1])
    await done.wait()
    for handle in handles:
        handle.cancel()
    loop.remove_reader(conn.fileno())
    loop.remove_reader(sock.fileno())
    sock.close()


class Phones:
    """The product side's handle on the phones process: its socket's port, calls, its CPU."""

    def __init__(self, cpu: int | None) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a running event loop
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=phones_main, args=(child, cpu), daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(30.0):
            raise RuntimeError("phones process did not start")
        self.port: int = self.conn.recv()

    def add(self, port: int) -> None:
        self.conn.send(("add", port))

    def cpu_s(self) -> float:
        self.conn.send(("cpu",))
        value: float = self.conn.recv()
        return value

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("stop",))
        self.process.join(5.0)
        if self.process.is_alive():
            self.process.kill()
        self.conn.close()
