"""IPv4 host input checks, routing and output, with explicit time."""

from __future__ import annotations

import errno

import pytest

from trio_netstack.proto.ipv4 import Ipv4Machine, OutDatagram
from trio_netstack.proto.route import IfAddress, NoRouteError, RouteTable
from trio_netstack.wire import ipv4 as wip
from trio_netstack.wire.addr import LIMITED_BROADCAST, ip_from_str

ME = ip_from_str("192.0.2.2")
PEER = ip_from_str("192.0.2.1")
FAR = ip_from_str("198.51.100.7")


def make(gateway: int | None = None) -> Ipv4Machine:
    routes = RouteTable()
    routes.add_link(1, 1500)
    routes.add_address(IfAddress(1, ME, 24))
    routes.set_default_gateway(gateway)
    return Ipv4Machine(routes, ident_secret=12345)


def packet(
    src: int = PEER,
    dst: int = ME,
    *,
    ttl: int = 64,
    ff: int = 0,
    proto: int = 1,
    payload: bytes = b"12345678",
) -> memoryview:
    head = wip.build_header(
        src=src,
        dst=dst,
        protocol=proto,
        payload_length=len(payload),
        ident=7,
        ttl=ttl,
        flags_fragment=ff,
    )
    return memoryview(head + payload)


def test_delivers_unicast_and_broadcasts() -> None:
    m = make()
    d = m.input_untrusted(packet(), 0, 0.0)
    assert d is not None and not d.broadcast and bytes(d.payload) == b"12345678"
    for dst in (LIMITED_BROADCAST, ip_from_str("192.0.2.255")):
        d = m.input_untrusted(packet(dst=dst), 0, 0.0)
        assert d is not None and d.broadcast


@pytest.mark.parametrize(
    ("pkt", "reason"),
    [
        (packet(dst=FAR), "not_for_us"),
        (packet(src=LIMITED_BROADCAST), "bad_source"),
        (packet(src=ip_from_str("224.0.0.1")), "bad_source"),
        (packet(src=ip_from_str("192.0.2.255")), "bad_source"),
        (packet(src=ip_from_str("127.0.0.1")), "martian"),
        (packet(ttl=0), "ttl_zero"),
        (packet()[:19], "ip_short"),
        (packet()[:27], "ip_truncated"),
    ],
)
def test_drops_are_counted(pkt: memoryview, reason: str) -> None:
    m = make()
    assert m.input_untrusted(pkt, 0, 0.0) is None
    assert m.counters[reason] == 1


def test_bad_checksum_dropped() -> None:
    raw = bytearray(packet())
    raw[10] ^= 0xFF
    m = make()
    assert m.input_untrusted(memoryview(raw), 0, 0.0) is None
    assert m.counters["ip_bad_checksum"] == 1


def test_output_routes_connected_and_via_gateway() -> None:
    gw = ip_from_str("192.0.2.254")
    m = make(gateway=gw)
    _, [(hop, pkt)] = m.output(OutDatagram(PEER, wip.PROTO_ICMP, b"hi"))
    assert hop == PEER
    header, payload = wip.parse_untrusted(pkt)
    assert (header.src, header.dst, header.ttl, bytes(payload)) == (ME, PEER, 64, b"hi")
    _, [(hop, _)] = m.output(OutDatagram(FAR, wip.PROTO_ICMP, b"hi"))
    assert hop == gw
    _, [(hop, _)] = m.output(OutDatagram(ip_from_str("192.0.2.255"), wip.PROTO_ICMP, b"x"))
    assert hop == LIMITED_BROADCAST


def test_no_route_message() -> None:
    m = make()
    with pytest.raises(NoRouteError) as info:
        m.output(OutDatagram(FAR, wip.PROTO_ICMP, b""))
    assert info.value.errno == errno.ENETUNREACH
    assert str(info.value).endswith("no route to 198.51.100.7: no gateway configured")


def test_too_big_with_dont_fragment() -> None:
    m = make()
    with pytest.raises(OSError) as info:
        m.output(OutDatagram(PEER, wip.PROTO_ICMP, bytes(1481), dont_fragment=True))
    assert info.value.errno == errno.EMSGSIZE
    assert len(m.output(OutDatagram(PEER, wip.PROTO_ICMP, bytes(1481)))[1]) == 2


def test_identifiers_advance_per_flow() -> None:
    m = make()
    a = [m.next_ident(ME, PEER, 1) for _ in range(3)]
    assert [(x - a[0]) & 0xFFFF for x in a] == [0, 1, 2]
    # A different secret gives a different, unpredictable starting point.
    other = Ipv4Machine(m.routes, ident_secret=999)
    assert other.next_ident(ME, PEER, 1) != m.next_ident(ME, PEER, 1)


def test_gateway_must_be_connected() -> None:
    routes = RouteTable()
    routes.add_link(1, 1500)
    routes.add_address(IfAddress(1, ME, 24))
    with pytest.raises(ValueError, match="not on a connected network"):
        routes.set_default_gateway(FAR)
