"""UDP between two stacks on an in-memory link under the mock clock."""

from __future__ import annotations

import errno
import hashlib
import random

import pytest
import trio
import trio.testing

import trio_netstack
from trio_netstack.testing import open_stack_pair


async def test_echo_and_addresses(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, b):
        server = trio_netstack.open_udp_socket(local_port=8888, stack=b)
        async with server, trio_netstack.open_udp_socket(stack=a) as client:
            host, port = client.getsockname()
            assert host == "0.0.0.0" and 32768 <= port <= 60999
            await client.send_to(b"hello!", ("192.0.2.2", 8888))
            data, peer = await server.receive_from()
            assert (data, peer) == (b"hello!", ("192.0.2.1", port))
            await server.send_to(data, peer)
            assert await client.receive_from() == (b"hello!", ("192.0.2.2", 8888))
            stats = client.statistics()
            assert (stats.datagrams_sent, stats.datagrams_received) == (1, 1)


@pytest.mark.parametrize("size", [0, 1, 1472, 1473, 8000, 65507])
async def test_sizes_through_fragmentation(autojump_clock: trio.abc.Clock, size: int) -> None:
    payload = random.Random(size).randbytes(size)
    async with open_stack_pair() as (a, b):
        with (
            trio_netstack.open_udp_socket(local_port=7, stack=b) as server,
            trio_netstack.open_udp_socket(stack=a) as client,
        ):
            await client.send_to(payload, ("192.0.2.2", 7))
            data, _ = await server.receive_from()
            assert data == payload
    with pytest.raises(OSError) as info:
        async with open_stack_pair() as (a, _):
            with trio_netstack.open_udp_socket(stack=a) as client:
                await client.send_to(bytes(65508), ("192.0.2.2", 7))
    assert info.value.errno == errno.EMSGSIZE


async def test_port_unreachable_refuses_connected_socket(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, b):
        with trio_netstack.open_udp_socket(stack=a) as client:
            await client.connect(("192.0.2.2", 9999))
            await client.send(b"anyone?")
            with pytest.raises(ConnectionRefusedError), trio.fail_after(5):
                await client.receive()
        assert b.statistics().icmp["tx_error_3_3"] == 1
        assert b.statistics().udp["no_port"] == 1


async def test_unconnected_socket_ignores_errors(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, _b):
        with trio_netstack.open_udp_socket(stack=a) as client:
            await client.send_to(b"x", ("192.0.2.2", 9999))
            with trio.move_on_after(2) as scope:
                await client.receive_from()
            assert scope.cancelled_caught
            assert client.statistics().errors_received == 1


async def test_bind_conflicts_and_close(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, _b):
        sock = trio_netstack.open_udp_socket(local_port=5000, stack=a)
        with pytest.raises(OSError) as info:
            trio_netstack.open_udp_socket(local_port=5000, stack=a)
        assert info.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError) as info:
            trio_netstack.open_udp_socket("192.0.2.77", stack=a)
        assert info.value.errno == errno.EADDRNOTAVAIL
        sock.close()
        with pytest.raises(trio.ClosedResourceError):
            await sock.send_to(b"x", ("192.0.2.2", 1))
        trio_netstack.open_udp_socket(local_port=5000, stack=a).close()  # free again


async def test_broadcast_needs_opt_in(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, b):
        with trio_netstack.open_udp_socket(local_port=67, stack=b) as server:
            with trio_netstack.open_udp_socket(stack=a) as client, pytest.raises(PermissionError):
                await client.send_to(b"x", ("255.255.255.255", 67))
            with trio_netstack.open_udp_socket(stack=a, broadcast=True) as client:
                await client.send_to(b"hi all", ("255.255.255.255", 67))
                await client.send_to(b"subnet", ("192.0.2.255", 67))
                assert (await server.receive_from())[0] == b"hi all"
                assert (await server.receive_from())[0] == b"subnet"


async def test_receive_queue_overflow_counted(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, b):
        with (
            trio_netstack.open_udp_socket(local_port=9, stack=b, receive_queue=4) as sink,
            trio_netstack.open_udp_socket(stack=a) as client,
        ):
            for i in range(10):
                await client.send_to(bytes([i]), ("192.0.2.2", 9))
            # Wait until the socket has accounted for all ten, queued or dropped: what
            # was counted, not how long it took. Nothing here waits on a timer, so each
            # pass lets every stack task run until it blocks; a datagram that never
            # reached the socket exhausts the passes.
            for _ in range(100):
                stats = sink.statistics()
                if stats.datagrams_received + stats.dropped_queue_full >= 10:
                    break
                await trio.testing.wait_all_tasks_blocked()
            assert (stats.datagrams_received, stats.dropped_queue_full) == (4, 6)
            assert [(await sink.receive_from())[0] for _ in range(4)] == [
                bytes([i]) for i in range(4)
            ]


async def test_lossy_link_loses_datagrams_not_bytes(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair(impair="loss=0.1,dup=0.05,reorder=0.1,corrupt=0.02", seed=11) as (
        a,
        b,
    ):
        with (
            trio_netstack.open_udp_socket(local_port=9, stack=b) as sink,
            trio_netstack.open_udp_socket(stack=a) as client,
        ):
            sent = {}
            for i in range(300):
                payload = random.Random(i).randbytes(200 + i)
                sent[hashlib.sha256(payload).digest()] = payload
                await client.send_to(payload, ("192.0.2.2", 9))
            got = []
            with trio.move_on_after(5):
                while True:
                    got.append((await sink.receive_from())[0])
            # Every datagram that arrived is one we sent, byte for byte.
            assert all(hashlib.sha256(g).digest() in sent for g in got)
            assert 150 < len(got) < 330
            # Corrupted frames were sent, and none of them reached the application.
            assert a.link.impair_stats["corrupted"] > 0  # type: ignore[attr-defined]
            assert (
                b.statistics().udp.get("udp_bad_checksum", 0)
                + b.statistics().ipv4.get("ip_bad_checksum", 0)
                > 0
            )


async def test_no_route_raised_in_caller(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, _b):
        with (
            trio_netstack.open_udp_socket(stack=a) as client,
            pytest.raises(trio_netstack.NoRouteError),
        ):
            await client.send_to(b"x", ("198.51.100.7", 53))
