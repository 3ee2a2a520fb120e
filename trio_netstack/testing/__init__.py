"""Helpers for testing code that uses trio_netstack, like ``trio.testing``.

``open_stack_pair()`` runs two stacks on one in-memory link (optionally
impaired, with a seed so that runs are reproducible); it works under
pytest-trio's ``autojump_clock``. :mod:`trio_netstack.testing.tcp` joins two bare TCP
machines, with explicit time and no stack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs

from .._runtime.config import StackConfig
from .._runtime.stack import Stack, open_stack
from ..link import ImpairedLink, Impairment, memory_link_pair
from ..link.base import Link

A_IP = "192.0.2.1"
B_IP = "192.0.2.2"
A_MAC = "02:00:00:00:00:01"
B_MAC = "02:00:00:00:00:02"


def make_link_pair(
    *, mtu: int = 1500, impair: str | None = None, seed: int = 1
) -> tuple[Link, Link]:
    """Two in-memory links joined together; ``impair`` applies to what each one sends.

    Each frame is impaired once (on its sender's side), each side with its own seed.
    """
    a, b = memory_link_pair(mtu=mtu)
    if impair is None:
        return a, b
    spec_a = Impairment.parse(f"{impair},seed={seed},direction=tx")
    spec_b = Impairment.parse(f"{impair},seed={seed + 1},direction=tx")
    return ImpairedLink(a, spec_a), ImpairedLink(b, spec_b)


@asynccontextmanager
async def open_stack_pair(
    *,
    mtu: int = 1500,
    impair: str | None = None,
    seed: int = 1,
    config: StackConfig | None = None,
) -> AsyncIterator[tuple[Stack, Stack]]:
    """Stacks A (192.0.2.1/24) and B (192.0.2.2/24) on one in-memory link."""
    link_a, link_b = make_link_pair(mtu=mtu, impair=impair, seed=seed)
    async with (
        open_stack(link_a, ip=f"{A_IP}/24", mac=A_MAC, config=config, secret=seed) as a,
        open_stack(link_b, ip=f"{B_IP}/24", mac=B_MAC, config=config, secret=seed + 7) as b,
    ):
        yield a, b


@asynccontextmanager
async def open_routed_hosts(
    *, forwarding: bool = True, config: StackConfig | None = None
) -> AsyncIterator[tuple[Stack, Stack, Stack]]:
    """Hosts A and B on two in-memory cables, with stack R between them.

    A (192.0.2.2/24, gateway 192.0.2.1) -- R (192.0.2.1/24 on its first interface,
    198.51.100.1/24 on its second, named "second") -- B (198.51.100.2/24, gateway
    198.51.100.1). ``forwarding`` makes R a router (``Ipv4Config.forwarding``).
    """
    a_link, r_link1 = memory_link_pair()
    r_link2, b_link = memory_link_pair()
    base = config or StackConfig()
    router_config = attrs.evolve(base, ipv4=attrs.evolve(base.ipv4, forwarding=forwarding))
    try:
        async with (
            open_stack(a_link, ip="192.0.2.2/24", gateway="192.0.2.1", config=base, secret=1) as a,
            open_stack(r_link1, ip="192.0.2.1/24", config=router_config, secret=2) as r,
            open_stack(
                b_link, ip="198.51.100.2/24", gateway="198.51.100.1", config=base, secret=3
            ) as b,
        ):
            await r.add_interface(r_link2, ip="198.51.100.1/24", name="second")
            yield a, r, b
    finally:
        await r_link2.aclose()
