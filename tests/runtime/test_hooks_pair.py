"""IPv4 hooks in a running stack: a hook at each point drops the packet it chose.

R routes between A (192.0.2.2) and B (198.51.100.2); every case sends one datagram
the hook picks (by UDP destination port) and one it does not, and checks that the
first is dropped and counted where it should be while the second arrives.
"""

from __future__ import annotations

import pytest
import trio

import trio_netstack
from trio_netstack.proto.hooks import HookPacket, HookPoint, Verdict
from trio_netstack.testing import open_routed_hosts
from trio_netstack.wire.addr import ip_from_str


def drop_port(port: int, seen: list[HookPacket]):  # type: ignore[no-untyped-def]
    def hook(packet: HookPacket) -> Verdict:
        seen.append(packet)
        return Verdict.DROP if packet.dport == port else Verdict.ACCEPT

    return hook


# (hook point, who sends, to which address, where the receiving socket is)
CASES = [
    (HookPoint.PREROUTING, "a", "192.0.2.1", "r"),  # arriving at R, for R
    (HookPoint.INPUT, "a", "192.0.2.1", "r"),
    (HookPoint.FORWARD, "a", "198.51.100.2", "b"),  # through R
    (HookPoint.OUTPUT, "r", "192.0.2.2", "a"),  # from R
    (HookPoint.POSTROUTING, "r", "192.0.2.2", "a"),
    (HookPoint.POSTROUTING, "a", "198.51.100.2", "b"),  # forwarded, on its way out
    (HookPoint.PREROUTING, "a", "198.51.100.2", "b"),  # forwarded, as it came in
]


@pytest.mark.parametrize(("point", "sender", "dst", "receiver"), CASES)
async def test_hook_drops_and_counts(
    autojump_clock: trio.abc.Clock, point: HookPoint, sender: str, dst: str, receiver: str
) -> None:
    async with open_routed_hosts(forwarding=True) as (a, r, b):
        hosts = {"a": a, "r": r, "b": b}
        seen: list[HookPacket] = []
        detach = r.attach_hook(point, drop_port(9001, seen))
        with (
            trio_netstack.open_udp_socket(local_port=9001, stack=hosts[receiver]) as chosen,
            trio_netstack.open_udp_socket(local_port=9002, stack=hosts[receiver]) as other,
            trio_netstack.open_udp_socket(stack=hosts[sender]) as out,
        ):
            await out.send_to(b"dropped", (dst, 9001))
            await out.send_to(b"passes", (dst, 9002))
            assert await other.receive_from() == (b"passes", other_source(sender, dst, out))
            with trio.move_on_after(2):
                await chosen.receive_from()
                pytest.fail(f"the {point.value} hook did not drop the datagram")
            assert r.statistics().ipv4[f"hook_drop_{point.value}"] == 1
            # The hook saw parsed headers at its point.
            udp_seen = [p for p in seen if p.protocol == 17]
            assert {p.dport for p in udp_seen} == {9001, 9002}
            assert all(p.point is point for p in seen)
            assert all(p.header.dst == ip_from_str(dst) for p in udp_seen)
            if point in (HookPoint.FORWARD, HookPoint.POSTROUTING):
                assert {p.oif for p in udp_seen} == {1 if dst == "192.0.2.2" else 2}
            # Detached, the hook costs nothing and drops nothing.
            detach()
            count = len(seen)
            await out.send_to(b"again", (dst, 9001))
            assert (await chosen.receive_from())[0] == b"again"
            assert len(seen) == count


def other_source(sender: str, dst: str, sock: trio_netstack.UdpSocket) -> tuple[str, int]:
    address = {"a": "192.0.2.2", "b": "198.51.100.2"}.get(sender)
    if address is None:  # R sends from the address of its route
        address = "192.0.2.1" if dst.startswith("192.0.2.") else "198.51.100.1"
    return (address, sock.getsockname()[1])


async def test_rewrite_in_prerouting_redirects(autojump_clock: trio.abc.Clock) -> None:
    """DNAT-like: R rewrites a datagram for R:5555 to B:7777 before routing it.

    The receivers verify checksums (an in-memory link vouches for none), so this
    also checks the incremental update of the IP and UDP checksums (RFC 1624).
    """
    async with open_routed_hosts(forwarding=True) as (a, r, b):

        def redirect(packet: HookPacket) -> Verdict:
            if packet.protocol == 17 and packet.dport == 5555:
                packet.set_dst(ip_from_str("198.51.100.2"))
                packet.set_dport(7777)
            return Verdict.ACCEPT

        r.attach_hook(HookPoint.PREROUTING, redirect)
        with (
            trio_netstack.open_udp_socket(local_port=7777, stack=b) as target,
            trio_netstack.open_udp_socket(stack=a) as out,
        ):
            await out.send_to(b"to R, taken to B", ("192.0.2.1", 5555))
            with trio.fail_after(5):  # a wrong checksum would be dropped by B: no answer
                data, (src, port) = await target.receive_from()
            assert (data, src, port) == (b"to R, taken to B", "192.0.2.2", out.getsockname()[1])
        assert "udp_bad_checksum" not in b.statistics().udp
        assert r.statistics().ipv4["forwarded"] == 1
