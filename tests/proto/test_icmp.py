"""The echo responder and error parsing, with explicit time."""

from __future__ import annotations

from trio_netstack.proto.icmp import IcmpMachine
from trio_netstack.proto.ipv4 import Delivery
from trio_netstack.testing.golden import LINUX_ECHO_REQUEST
from trio_netstack.wire import icmp as wicmp
from trio_netstack.wire import ipv4 as wip
from trio_netstack.wire.addr import ip_from_str

ME = ip_from_str("192.0.2.2")
PEER = ip_from_str("192.0.2.1")


def delivery(payload: bytes, *, src: int = PEER, broadcast: bool = False) -> Delivery:
    packet = (
        wip.build_header(src=src, dst=ME, protocol=1, payload_length=len(payload), ident=1, ttl=61)
        + payload
    )
    header, data = wip.parse_untrusted(packet)
    return Delivery(header, data, 0, broadcast)


def test_echo_reply_mirrors_request() -> None:
    m = IcmpMachine()
    header, data = wip.parse_untrusted(LINUX_ECHO_REQUEST[14:])
    m.input_untrusted(Delivery(header, data, 0, False), 0.0)
    [out] = m.out
    assert (out.dst, out.src, out.protocol) == (PEER, ME, wip.PROTO_ICMP)
    reply = wicmp.parse_untrusted(out.payload)
    assert (reply.type, reply.echo_id, reply.echo_seq) == (wicmp.ECHO_REPLY, 0x0D59, 1)
    assert bytes(reply.payload) == bytes(data[8:])


def test_broadcast_echo_ignored() -> None:
    m = IcmpMachine()
    m.input_untrusted(delivery(wicmp.build_echo(True, 1, 1, b"x"), broadcast=True), 0.0)
    assert m.out == [] and m.counters["echo_broadcast_ignored"] == 1


def test_echo_reply_event() -> None:
    m = IcmpMachine()
    m.input_untrusted(delivery(wicmp.build_echo(False, 77, 5, b"abc")), 3.5)
    [ev] = m.echo_replies
    assert (ev.src, ev.ident, ev.seq, ev.ttl, ev.payload, ev.received_at) == (
        PEER,
        77,
        5,
        61,
        b"abc",
        3.5,
    )


def test_error_with_quoted_echo() -> None:
    m = IcmpMachine()
    original = wip.build_header(
        src=ME, dst=ip_from_str("198.51.100.1"), protocol=1, payload_length=16, ident=9
    ) + wicmp.build_echo(True, 42, 7, bytes(8))
    m.input_untrusted(delivery(wicmp.build(wicmp.DEST_UNREACHABLE, 1, 0, original[:28])), 1.0)
    [err] = m.errors
    assert (err.reporter, err.type, err.code) == (PEER, 3, 1)
    assert (err.echo_id, err.echo_seq) == (42, 7)
    assert err.original.dst == ip_from_str("198.51.100.1")
    assert not err.frag_needed


def test_frag_needed_report() -> None:
    m = IcmpMachine()
    original = wip.build_header(
        src=ME, dst=ip_from_str("198.51.100.1"), protocol=17, payload_length=1472, ident=9
    ) + bytes(8)
    body = wicmp.build(wicmp.DEST_UNREACHABLE, wicmp.UNREACH_FRAG_NEEDED, 1400, original)
    m.input_untrusted(delivery(body), 1.0)
    [err] = m.errors
    assert err.frag_needed and err.next_hop_mtu == 1400


def test_quoted_ports_of_tcp_and_udp_only() -> None:
    m = IcmpMachine()
    for protocol, ports in ((6, (40000, 80)), (17, (40000, 80)), (1, None)):
        transport = (40000).to_bytes(2, "big") + (80).to_bytes(2, "big") + bytes(4)
        original = (
            wip.build_header(src=ME, dst=PEER, protocol=protocol, payload_length=8, ident=3)
            + transport
        )
        m.input_untrusted(delivery(wicmp.build(wicmp.DEST_UNREACHABLE, 3, 0, original)), 1.0)
        assert m.errors.pop().quoted_ports == ports


def test_bad_messages_counted() -> None:
    m = IcmpMachine()
    m.input_untrusted(delivery(b"\x08\x00"), 0.0)
    bad = bytearray(wicmp.build_echo(True, 1, 1, b"zz"))
    bad[2] ^= 1
    m.input_untrusted(delivery(bytes(bad)), 0.0)
    m.input_untrusted(delivery(wicmp.build(wicmp.DEST_UNREACHABLE, 3, 0, b"\x45" + bytes(5))), 0.0)
    assert m.counters["icmp_short"] == 1
    assert m.counters["icmp_bad_checksum"] == 1
    assert m.counters["error_quote_ip_short"] == 1
    assert m.out == [] and m.errors == []
