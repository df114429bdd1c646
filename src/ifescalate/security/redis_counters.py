"""Redis :class:`~ifescalate.security.counters.Counters`, shared by every instance.

Each operation is one Lua script, so it is atomic on the server and costs one round trip. A
window is a sorted set of event times (score = the caller's ``now``, member made unique with a
random suffix); ``ZREMRANGEBYSCORE -inf cutoff`` drops the events at or before ``now - window``,
exactly like the in-memory backend. A block is a string holding its end time. Times are decided
by the caller's clock, so instances must share one (wall-clock seconds); ``PEXPIRE`` only lets
Redis collect keys nobody touches any more.

Keys are ``{prefix}{{key}}:w`` and ``{prefix}{{key}}:b``: the braces are a Redis Cluster hash tag
so that a key's window and block live in one slot and one script may touch both.

Every operation is bounded by ``timeout`` seconds in all (connect, the script, one retry on a
fresh connection after a stale one broke), so a hanging Redis (stopped, partitioned) cannot hold
a request longer than that; any failure is raised as
:class:`~ifescalate.security.availability.CountersUnavailable`, which the gate answers with 503.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .availability import CountersUnavailable
from .counters import Acquired, Hit

T = TypeVar("T")

#: Seconds one operation may take in all. Redis answers a script in well under a millisecond on a
#: LAN; half a second is an outage, not a slow answer.
DEFAULT_TIMEOUT = 0.5

_HIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCARD', KEYS[1])
"""

_COUNT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""

# Scores come back from ZRANGE WITHSCORES as strings; returning them as strings keeps the full
# double (a Lua number would be truncated to an integer reply).
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
local allowed = 0
if n < tonumber(ARGV[5]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  n = n + 1
  allowed = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {allowed, n, oldest[2] or false}
"""

_HIT_AND_BLOCK = """
local b = redis.call('GET', KEYS[2])
if b and tonumber(b) > tonumber(ARGV[1]) then
  return {0, b}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[5]) then
  redis.call('SET', KEYS[2], ARGV[6], 'PX', ARGV[7])
  redis.call('DEL', KEYS[1])
  return {n, ARGV[6]}
end
return {n, false}
"""

# RFC 7616 §3.4 replay check: the highest nonce-count accepted per nonce, kept for the nonce's
# remaining lifetime. GET and SET in one script, so two instances answering the same (nonce, nc)
# at once cannot both accept it.
_NONCE_COUNT = """
local seen = redis.call('GET', KEYS[1])
if seen and tonumber(seen) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


def _ms(seconds: float) -> str:
    # A TTL of at least one second beyond the logical span: clocks of instances differ a little.
    return str(max(1, math.ceil(seconds * 1000)) + 1000)


def _num(value: float) -> str:
    # repr() of a float round-trips exactly through Redis' strtod and Lua's tonumber.
    return repr(float(value))


class RedisCounters:
    """:class:`Counters` on one Redis (default ``redis://127.0.0.1:6379/0``).

    ``prefix`` namespaces every key (tests use a unique one per run and call :meth:`delete_all`).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "ifescalate:sec:",
        rand: Callable[[int], bytes] = os.urandom,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not timeout > 0:
            raise ValueError("the counters timeout must be positive")
        self._r = client
        self.prefix = prefix
        self._rand = rand
        self.timeout = timeout
        self._hit = client.register_script(_HIT)
        self._count = client.register_script(_COUNT)
        self._acquire = client.register_script(_ACQUIRE)
        self._hit_and_block = client.register_script(_HIT_AND_BLOCK)
        self._nonce_count = client.register_script(_NONCE_COUNT)

    @classmethod
    def from_url(
        cls,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "ifescalate:sec:",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> RedisCounters:
        # One retry without backoff: a pooled connection Redis closed (a restart) fails once and
        # the retry takes a fresh one; more retries would only stretch an outage's every request.
        # The sockets' own timeouts are looser than the bound _io puts on the whole operation,
        # which so always decides (and names the timeout it enforced).
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout * 2,
            socket_connect_timeout=timeout * 2,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(client, prefix=prefix, timeout=timeout)

    async def _io(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await op()
        except (RedisError, OSError, TimeoutError) as exc:
            what = str(exc) or f"no answer within {self.timeout:g} s"
            raise CountersUnavailable(f"redis: {type(exc).__name__}: {what}") from exc

    def _keys(self, key: str) -> tuple[str, str]:
        base = f"{self.prefix}{{{key}}}"
        return f"{base}:w", f"{base}:b"

    def _member(self, now: float) -> str:
        return f"{_num(now)}:{self._rand(8).hex()}"

    async def hit(self, key: str, now: float, window: float) -> int:
        w, _ = self._keys(key)
        args = [_num(now), _num(now - window), self._member(now), _ms(window)]
        return int(await self._io(lambda: self._hit(keys=[w], args=args)))

    async def count(self, key: str, now: float, window: float) -> int:
        w, _ = self._keys(key)
        return int(await self._io(lambda: self._count(keys=[w], args=[_num(now - window)])))

    async def acquire(self, key: str, now: float, window: float, limit: int) -> Acquired:
        w, _ = self._keys(key)
        args = [_num(now), _num(now - window), self._member(now), _ms(window), str(limit)]
        reply = await self._io(lambda: self._acquire(keys=[w], args=args))
        allowed, count, oldest = cast(list[Any], reply)
        return Acquired(bool(allowed), int(count), float(oldest) if oldest else None)

    async def hit_and_block(
        self, key: str, now: float, window: float, threshold: int, block_for: float
    ) -> Hit:
        w, b = self._keys(key)
        args = [
            _num(now),
            _num(now - window),
            self._member(now),
            _ms(window),
            str(threshold),
            _num(now + block_for),
            _ms(block_for),
        ]
        reply = await self._io(lambda: self._hit_and_block(keys=[w, b], args=args))
        count, until = cast(list[Any], reply)
        return Hit(int(count), float(until) if until else None)

    async def blocked_until(self, key: str, now: float) -> float | None:
        _, b = self._keys(key)
        raw = await self._io(lambda: self._r.get(b))
        if raw is None:
            return None
        until = float(raw)
        return until if until > now else None

    async def block(self, key: str, until: float, now: float) -> None:
        _, b = self._keys(key)
        await self._io(lambda: self._r.set(b, _num(until), px=int(_ms(until - now))))

    async def clear(self, key: str) -> None:
        await self._io(lambda: self._r.delete(*self._keys(key)))

    async def nonce_count(self, nonce: str, nc: int, expires_at: float, now: float) -> bool:
        if expires_at <= now:  # an expired nonce cannot be counted, so cannot be accepted
            return False
        # Nonces are base64 of an HMAC-bound value (RFC 7616 §3.3): a fixed-size key charset.
        key = f"{self.prefix}nc:{nonce}"
        # Kept for the nonce's remaining lifetime plus _ms's second: an instance whose clock runs
        # behind still takes the nonce as fresh after it expired here, and must still see its count.
        ttl = _ms(expires_at - now)
        return bool(await self._io(lambda: self._nonce_count(keys=[key], args=[str(nc), ttl])))

    async def shared_secret(self, name: str, size: int) -> bytes | None:
        # SET NX: the first instance to start creates the secret, every later one reads it. No
        # TTL: nonces signed with it must verify at every instance for as long as they live.
        key = f"{self.prefix}secret:{name}"
        await self._io(lambda: self._r.set(key, self._rand(size).hex(), nx=True))
        raw = await self._io(lambda: self._r.get(key))
        if raw is None:
            raise RuntimeError(f"shared secret {key} vanished from Redis right after SET NX")
        return bytes.fromhex(raw.decode("ascii") if isinstance(raw, bytes) else str(raw))

    async def ping(self) -> None:
        await self._io(self._r.ping)

    async def delete_all(self) -> int:
        """Delete every key under :attr:`prefix` (tests and operator resets); returns how many."""
        deleted = 0
        async for name in self._r.scan_iter(match=f"{_glob_escape(self.prefix)}*", count=500):
            deleted += int(await self._r.delete(name))
        return deleted

    async def aclose(self) -> None:
        await self._r.aclose()


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
