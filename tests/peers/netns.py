"""A network namespace joined to the host by a veth pair: a second machine for off-loopback tests.

`NetNs` creates `ip netns` NAME and a veth pair whose host end gets `host_ip` and whose other end
(inside the namespace) gets `ns_ip`, a /30 from the benchmarking range 198.18.0.0/15 (RFC 2544, never
routed). Traffic between the two addresses crosses a real interface, so the service sees a source
that is *not* loopback. Names and the /30 are unique per process and instance so parallel runs do not
collide; everything is deleted on exit (and at interpreter exit if a test was interrupted).

Needs root (CAP_NET_ADMIN) and iproute2. If they are missing, entering raises PeerError with the
reason: tests that need a second host must fail, never skip, where namespaces cannot be made.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import os
import random
import subprocess
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from .proc import PeerError, require_binary

#: RFC 2544 benchmarking addresses: never on a real network, so no clash with the host's routes.
BENCH_NET = ipaddress.IPv4Network("198.18.0.0/15")

_SEQ = itertools.count()
_LIVE: set[NetNs] = set()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [require_binary("ip"), *args], capture_output=True, text=True, timeout=10, check=False
    )
    if check and done.returncode != 0:
        raise PeerError(
            f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}\n"
            "network namespaces need root (CAP_NET_ADMIN) and iproute2; this test needs a second "
            "host and cannot run without them"
        )
    return done


def _used_addresses() -> set[ipaddress.IPv4Address]:
    out = _ip("-o", "-4", "addr", "show").stdout
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            found.add(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).ip)
    return found


class NetNs:
    """`with NetNs() as ns:` -> `ns.host_ip` (bind the service here), `ns.ns_ip` (the client's
    address), `ns.exec_prefix()` (prepend to a command to run it inside the namespace)."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}x{next(_SEQ)}"
        self.name = f"ife{tag}"
        self.host_if = f"ifh{tag}"[:15]  # IFNAMSIZ: 15 characters
        self.ns_if = f"ifn{tag}"[:15]
        self.host_ip = ""
        self.ns_ip = ""
        self._created = False

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        used = _used_addresses()
        rng = random.Random(f"{os.getpid()}-{self.name}-{os.urandom(4).hex()}")
        for _ in range(100):
            index = rng.randrange(BENCH_NET.num_addresses // 4)
            subnet = ipaddress.IPv4Network((int(BENCH_NET.network_address) + 4 * index, 30))
            if not any(addr in subnet for addr in used):
                return subnet
        raise PeerError(f"no free /30 in {BENCH_NET} after 100 tries")

    def __enter__(self) -> Self:
        subnet = self._pick_subnet()
        host, peer = list(subnet.hosts())
        self.host_ip, self.ns_ip = str(host), str(peer)
        _ip("netns", "add", self.name)
        self._created = True
        _LIVE.add(self)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            inside = ("netns", "exec", self.name, require_binary("ip"))
            _ip(*inside, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            _ip(*inside, "link", "set", self.ns_if, "up")
            _ip(*inside, "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.delete()

    def exec_prefix(self) -> list[str]:
        """`ip netns exec NAME`: put it before argv to run a program inside the namespace."""
        return [require_binary("ip"), "netns", "exec", self.name]

    def run(
        self, argv: Sequence[str], *, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the namespace to completion (bounded by `timeout`), output captured."""
        return subprocess.run(
            [*self.exec_prefix(), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def delete(self) -> None:
        """Remove the namespace and both veth ends; safe to call twice."""
        if not self._created:
            return
        # Deleting the namespace destroys its veth end, and with it the pair, but asynchronously:
        # delete the host end as well so the name is free at once.
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)
        self._created = False
        _LIVE.discard(self)


@atexit.register
def _delete_leftovers() -> None:
    for ns in list(_LIVE):
        with contextlib.suppress(Exception):
            ns.delete()
