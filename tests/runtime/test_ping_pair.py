"""Two stacks on an in-memory link under the mock clock: ARP, ping, loss, failures."""

from __future__ import annotations

import pytest
import trio

import trio_netstack
from trio_netstack.testing import open_stack_pair


async def test_ping_both_ways(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, b):
        result = await trio_netstack.ping("192.0.2.2", count=10, interval=0.1, stack=a)
        assert result.received == 10
        assert [r.seq for r in result.replies] == list(range(1, 11))
        assert all(
            r.size == 56 and r.ttl == 64 and r.address == "192.0.2.2" for r in result.replies
        )
        back = await trio_netstack.ping("192.0.2.1", count=3, interval=0.1, stack=b)
        assert back.received == 3
        stats_a, stats_b = a.statistics(), b.statistics()
        assert stats_b.icmp["rx_echo_request"] == 10
        assert stats_b.icmp["tx_echo_reply"] == 10
        assert stats_a.icmp["rx_echo_reply"] == 10
        # One ARP exchange each way at most; the rest used the cache.
        assert stats_a.arp.get("tx_request", 0) <= 1
        assert {n.ip for n in a.neighbours()} == {0xC0000202}


async def test_current_stack_is_used(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (_a, b):
        # Inner open_stack_pair opened B last, so B is current.
        assert trio_netstack.current_stack() is b
        result = await trio_netstack.ping("192.0.2.1", count=1)
        assert result.received == 1


async def test_ping_large_payload(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, _b):
        result = await trio_netstack.ping("192.0.2.2", count=2, size=1472, stack=a)
        assert result.received == 2 and result.replies[0].size == 1472
        # Fragmented both ways (the reply is as large as the request).
        for size in (1473, 5000, 30000, 65507):
            result = await trio_netstack.ping("192.0.2.2", count=1, size=size, stack=a)
            assert result.received == 1 and result.replies[0].size == size
        assert a.statistics().ipv4["tx_fragmented"] == 4
        assert a.statistics().reassembly["reassembled"] == 4


async def test_ping_over_lossy_link(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair(impair="loss=0.2", seed=4) as (a, _b):
        result = await trio_netstack.ping("192.0.2.2", count=100, interval=0.05, timeout=1, stack=a)
        # Each echo crosses the link twice: about 0.8 * 0.8 of them come back.
        assert 40 <= result.received <= 85
        assert len({r.seq for r in result.replies}) == result.received


async def test_unreachable_host_reported(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, _b):
        start = trio.current_time()
        result = await trio_netstack.ping("192.0.2.9", count=1, timeout=10, stack=a)
        assert result.received == 0
        [err] = result.errors
        assert err.description == "Destination Host Unreachable"
        assert err.address == "192.0.2.1" and err.seq == 1
        # Three ARP requests one second apart, then give up (Linux's defaults).
        assert 2.9 < trio.current_time() - start < 3.5
        assert a.statistics().arp["tx_request"] == 3
        assert a.statistics().arp["resolution_failed"] == 1


async def test_no_route_is_immediate(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, _b):
        with pytest.raises(trio_netstack.NoRouteError, match="no gateway configured"):
            await trio_netstack.ping("198.51.100.7", stack=a)


async def test_statistics_are_frozen(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, _b):
        snap = a.statistics()
        await trio_netstack.ping("192.0.2.2", count=1, stack=a)
        assert snap.icmp.get("rx_echo_reply", 0) == 0
        assert a.statistics().icmp["rx_echo_reply"] == 1
        with pytest.raises(TypeError):
            snap.icmp["x"] = 1  # type: ignore[index]


async def test_no_stack_error() -> None:
    with pytest.raises(RuntimeError, match="open_stack"):
        await trio_netstack.ping("192.0.2.1")


async def test_user_exception_is_not_wrapped(autojump_clock: trio.abc.Clock) -> None:
    with pytest.raises(KeyError):
        async with open_stack_pair():
            raise KeyError("mine")
