"""Parse real Linux frames and build our answers byte for byte."""

from __future__ import annotations

from trio_netstack.testing.golden import (
    KERNEL_MAC,
    LINUX_ARP_REQUEST,
    LINUX_ECHO_REQUEST,
    STACK_MAC,
)
from trio_netstack.wire import arp, ethernet, icmp, ipv4
from trio_netstack.wire.addr import ip_from_str


def test_linux_arp_request_parses() -> None:
    header, payload = ethernet.parse_untrusted(LINUX_ARP_REQUEST)
    assert header.dst == b"\xff" * 6
    assert header.src == KERNEL_MAC
    assert header.ethertype == ethernet.ETHERTYPE_ARP
    pkt = arp.parse_untrusted(payload)
    assert pkt.op == arp.OP_REQUEST
    assert pkt.sha == KERNEL_MAC
    assert pkt.spa == ip_from_str("192.0.2.1")
    assert pkt.tpa == ip_from_str("192.0.2.2")


def test_arp_reply_bytes() -> None:
    reply = ethernet.build(
        KERNEL_MAC,
        STACK_MAC,
        ethernet.ETHERTYPE_ARP,
        arp.build(
            arp.OP_REPLY, STACK_MAC, ip_from_str("192.0.2.2"), KERNEL_MAC, ip_from_str("192.0.2.1")
        ),
    )
    expected = bytes.fromhex(
        "02000000000a02000000000b0806000108000604000202000000000bc000020202000000000ac0000201"
    ) + bytes(18)  # padded to the 60-byte minimum (RFC 894)
    assert reply == expected
    assert len(reply) == 60


def test_linux_echo_request_parses_and_checksums() -> None:
    _, payload = ethernet.parse_untrusted(LINUX_ECHO_REQUEST)
    header, data = ipv4.parse_untrusted(payload)
    assert header.ident == 0x52FE
    assert header.dont_fragment and not header.is_fragment
    assert header.ttl == 64 and header.protocol == ipv4.PROTO_ICMP
    assert header.checksum == 0x63CF
    msg = icmp.parse_untrusted(data)
    assert (msg.type, msg.echo_id, msg.echo_seq) == (icmp.ECHO_REQUEST, 0x0D59, 1)
    assert len(msg.payload) == 16


def test_echo_reply_checksum_matches_incremental_update() -> None:
    _, payload = ethernet.parse_untrusted(LINUX_ECHO_REQUEST)
    _, data = ipv4.parse_untrusted(payload)
    msg = icmp.parse_untrusted(data)
    reply = icmp.build(icmp.ECHO_REPLY, 0, msg.rest, msg.payload)
    # Type 8 -> 0 lowers the sum by 0x0800, so the stored checksum rises by 0x0800
    # (RFC 1624 incremental update): 0x392e -> 0x412e.
    assert reply[:8] == bytes.fromhex("0000412e0d590001")
    assert reply[8:] == bytes(msg.payload)


def test_ipv4_header_build_matches_linux() -> None:
    header = ipv4.build_header(
        src=ip_from_str("192.0.2.1"),
        dst=ip_from_str("192.0.2.2"),
        protocol=ipv4.PROTO_ICMP,
        payload_length=24,
        ident=0x52FE,
        flags_fragment=ipv4.FLAG_DF,
    )
    assert header == LINUX_ECHO_REQUEST[14:34]


def test_padded_frame_payload_bounded_by_total_length() -> None:
    # A 42-byte IPv4 datagram arriving in a 60-byte frame: the padding is not data.
    small = ipv4.build_header(
        src=1, dst=2, protocol=ipv4.PROTO_ICMP, payload_length=8, ident=1
    ) + icmp.build_echo(True, 1, 1, b"")
    frame = ethernet.build(STACK_MAC, KERNEL_MAC, ethernet.ETHERTYPE_IPV4, small)
    assert len(frame) == 60
    _, payload = ethernet.parse_untrusted(frame)
    header, data = ipv4.parse_untrusted(payload)
    assert header.total_length == 28
    assert len(data) == 8
    assert icmp.parse_untrusted(data).type == icmp.ECHO_REQUEST
