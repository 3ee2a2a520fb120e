"""ICMP errors crossing an in-memory hub: crafted by a raw port, handled by a stack."""

from __future__ import annotations

import trio

import trio_netstack
from trio_netstack.link import MemoryHub
from trio_netstack.wire import arp, ethernet, icmp, ipv4, udp
from trio_netstack.wire.addr import ip_from_str, mac_from_str

STACK_MAC = mac_from_str("02:00:00:00:00:01")
RAW_MAC = mac_from_str("02:00:00:00:00:99")
STACK_IP = ip_from_str("192.0.2.1")
ROUTER = ip_from_str("192.0.2.254")
FAR = ip_from_str("198.51.100.7")


def frag_needed(mtu: int) -> bytes:
    quoted = (
        ipv4.build_header(
            src=STACK_IP,
            dst=FAR,
            protocol=17,
            payload_length=1480,
            ident=9,
            flags_fragment=ipv4.FLAG_DF,
        )
        + udp.build(STACK_IP, FAR, 40000, 53, b"")[:8]
    )
    body = icmp.build(icmp.DEST_UNREACHABLE, icmp.UNREACH_FRAG_NEEDED, mtu, quoted)
    packet = (
        ipv4.build_header(src=ROUTER, dst=STACK_IP, protocol=1, payload_length=len(body), ident=1)
        + body
    )
    return ethernet.build(STACK_MAC, RAW_MAC, ethernet.ETHERTYPE_IPV4, packet)


def asks_for_router(frame: bytes) -> bool:
    header, payload = ethernet.parse_untrusted(frame)
    return header.ethertype == ethernet.ETHERTYPE_ARP and arp.parse_untrusted(payload).tpa == ROUTER


async def test_fragmentation_needed_lowers_path_mtu(autojump_clock: trio.abc.Clock) -> None:
    hub = MemoryHub()
    stack_port, raw = hub.attach("stack"), hub.attach("raw")
    async with trio_netstack.open_stack(
        stack_port, ip="192.0.2.1/24", gateway="192.0.2.254", mac="02:00:00:00:00:01"
    ) as stack:
        assert stack.path_mtu("198.51.100.7") == 1500
        await raw.send_batch([frag_needed(1280)])
        # A ping across the hub is processed after the error (frames keep their order).
        await raw.send_batch(
            [
                ethernet.build(
                    STACK_MAC,
                    RAW_MAC,
                    ethernet.ETHERTYPE_IPV4,
                    ipv4.build_header(
                        src=ROUTER, dst=STACK_IP, protocol=1, payload_length=8, ident=2
                    )
                    + icmp.build_echo(True, 1, 1, b""),
                )
            ]
        )
        # The stack asks who has the router (to answer the ping) only after it handled
        # the error that came before the ping.
        with trio.fail_after(5):
            while not any(asks_for_router(f) for f, _ in await raw.receive_batch()):
                pass
        assert stack.statistics().pmtu["lowered"] == 1
        assert stack.path_mtu("198.51.100.7") == 1280
        assert stack.path_mtu("192.0.2.9") == 1500
