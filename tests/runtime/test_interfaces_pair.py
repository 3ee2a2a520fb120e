"""Several interfaces per stack, addresses changed at run time, sending before an address.

Topology (in-memory cables): A (192.0.2.2) -- link1 -- R -- link2 -- B (198.51.100.2);
R holds 192.0.2.1/24 on its first interface and 198.51.100.1/24 on its second.
"""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing

import trio_netstack
from trio_netstack.link.memory import MemoryHub
from trio_netstack.testing import open_routed_hosts
from trio_netstack.wire import ethernet, udp
from trio_netstack.wire import ipv4 as wip
from trio_netstack.wire.addr import ip_from_str, mac_from_str


async def test_each_datagram_leaves_by_its_route(autojump_clock: trio.abc.Clock) -> None:
    async with open_routed_hosts(forwarding=False) as (a, r, b):
        assert r.addresses == ["192.0.2.1/24", "198.51.100.1/24"]
        first, second = r.interfaces
        assert (first.ifindex, second.ifindex, second.name) == (1, 2, "second")
        with (
            trio_netstack.open_udp_socket(local_port=7, stack=a) as at_a,
            trio_netstack.open_udp_socket(local_port=7, stack=b) as at_b,
            trio_netstack.open_udp_socket(stack=r) as sender,
        ):
            await trio.testing.wait_all_tasks_blocked()  # each interface's GARP went out
            before = {i.ifindex: i.link.stats.tx_frames for i in r.interfaces}
            await sender.send_to(b"to A", ("192.0.2.2", 7))
            assert await at_a.receive_from() == (b"to A", ("192.0.2.1", sender.getsockname()[1]))
            after_a = {i.ifindex: i.link.stats.tx_frames for i in r.interfaces}
            await sender.send_to(b"to B", ("198.51.100.2", 7))
            data, (src, _) = await at_b.receive_from()
            assert (data, src) == (b"to B", "198.51.100.1")  # the source of B's route
            after_b = {i.ifindex: i.link.stats.tx_frames for i in r.interfaces}
        # ARP request + datagram out of link 1 for A, nothing out of link 2; then the
        # reverse for B.
        assert after_a[1] - before[1] == 2 and after_a[2] == before[2]
        assert after_b[2] - after_a[2] == 2 and after_b[1] == after_a[1]
        # Each interface has its own neighbour cache.
        assert {n.ip for n in r.neighbours()} == {
            ip_from_str("192.0.2.2"),
            ip_from_str("198.51.100.2"),
        }
        assert r.interface_statistics("second")["arp"]["resolved"] == 1
        # A host does not forward: A cannot reach B through R.
        result = await trio_netstack.ping("198.51.100.2", timeout=0.5, stack=a)
        assert result.received == 0
        assert r.statistics().ipv4["not_for_us"] == 1


async def test_forwarding_between_interfaces(autojump_clock: trio.abc.Clock) -> None:
    async with open_routed_hosts(forwarding=True) as (a, r, b):
        result = await trio_netstack.ping("198.51.100.2", count=3, stack=a)
        assert result.received == 3 and all(x.ttl == 63 for x in result.replies)
        assert r.statistics().ipv4["forwarded"] == 6  # three requests, three replies
        # TTL 1 does not cross the router: time exceeded from R's address on A's side.
        result = await trio_netstack.ping("198.51.100.2", ttl=1, timeout=0.5, stack=a)
        [error] = result.errors
        assert (error.address, error.type, error.code) == ("192.0.2.1", 11, 0)
        # TCP across the router.
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio_netstack.serve_tcp, stack=b), echo, 9000
            )
            async with trio_netstack.open_tcp_stream("198.51.100.2", 9000, stack=a) as s:
                await s.send_all(b"x" * 100_000)
                await s.send_eof()
                got = b""
                while chunk := await s.receive_some():
                    got += chunk
            assert got == b"x" * 100_000
            for listener in listeners:
                await listener.aclose()
            nursery.cancel_scope.cancel()


async def echo(stream: trio_netstack.TcpStream) -> None:
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)


async def test_address_added_and_removed_at_run_time(autojump_clock: trio.abc.Clock) -> None:
    async with open_routed_hosts(forwarding=False) as (a, r, _b):
        result = await trio_netstack.ping("192.0.2.10", timeout=0.5, stack=a)
        assert result.received == 0
        r.add_address("192.0.2.10", 24)
        assert "192.0.2.10/24" in r.addresses
        result = await trio_netstack.ping("192.0.2.10", count=2, stack=a)
        assert result.received == 2
        r.remove_address("192.0.2.10")
        assert "192.0.2.10/24" not in r.addresses
        dropped = r.statistics().ipv4.get("not_for_us", 0)
        result = await trio_netstack.ping("192.0.2.10", count=2, timeout=0.5, stack=a)
        assert result.received == 0
        assert r.statistics().ipv4["not_for_us"] == dropped + 2  # A still knows R's MAC
        # The other address is still answered.
        assert (await trio_netstack.ping("192.0.2.1", stack=a)).received == 1
        with pytest.raises(OSError, match="not configured"):
            r.remove_address("192.0.2.10")


async def test_before_an_address_exists(autojump_clock: trio.abc.Clock) -> None:
    """What a DHCP client does: broadcast from 0.0.0.0, take a unicast to the offer."""
    hub = MemoryHub()
    server_link, client_link, raw = hub.attach("server"), hub.attach("client"), hub.attach("raw")
    client_mac = "02:00:00:00:00:99"
    async with (
        trio_netstack.open_stack(server_link, ip="192.0.2.1/24", secret=5) as server,
        trio_netstack.open_stack(client_link, mac=client_mac, secret=6) as client,
    ):
        assert client.addresses == []
        with (
            trio_netstack.open_udp_socket(local_port=67, broadcast=True, stack=server) as srv,
            trio_netstack.open_udp_socket(
                local_port=68, broadcast=True, interface=1, stack=client
            ) as cli,
        ):
            await cli.send_to(b"DISCOVER", ("255.255.255.255", 67))
            assert await srv.receive_from() == (b"DISCOVER", ("0.0.0.0", 68))
            # A unicast to the address being offered, straight to the client's MAC (a
            # server does not ARP for an address nobody holds yet).
            frame = unicast_frame(client_mac, "192.0.2.77")
            await raw.send_batch([frame])
            with trio.move_on_after(1):
                await cli.receive_from()
                pytest.fail("a unicast to an address not ours was taken")
            assert client.statistics().ipv4["not_for_us"] == 1
            client.accept_unconfigured(True)
            await raw.send_batch([frame])
            assert await cli.receive_from() == (b"OFFER", ("192.0.2.1", 67))
            assert client.statistics().ipv4["rx_unconfigured"] == 1
            # Once configured, the interface takes only its own addresses again.
            client.add_address("192.0.2.77", 24)
            await raw.send_batch([unicast_frame(client_mac, "192.0.2.78")])
            with trio.move_on_after(1):
                await cli.receive_from()
                pytest.fail("the interface took a datagram for another address")
            assert client.statistics().ipv4["not_for_us"] == 2
    await raw.aclose()


def unicast_frame(dst_mac: str, dst: str) -> bytes:
    """A UDP datagram from 192.0.2.1:67 to ``dst``:68, framed for ``dst_mac``."""
    src = ip_from_str("192.0.2.1")
    segment = udp.build(src, ip_from_str(dst), 67, 68, b"OFFER")
    header = wip.build_header(
        src=src,
        dst=ip_from_str(dst),
        protocol=wip.PROTO_UDP,
        payload_length=len(segment),
        ident=1,
    )
    return ethernet.build(
        mac_from_str(dst_mac), b"\x02" + bytes(4) + b"\x07", 0x0800, header + segment
    )
