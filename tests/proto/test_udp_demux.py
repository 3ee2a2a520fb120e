from __future__ import annotations

import errno
import random

import pytest

from trio_netstack.proto.icmp import IcmpErrorReport
from trio_netstack.proto.ipv4 import Delivery
from trio_netstack.proto.ports import EPHEMERAL_HIGH, EPHEMERAL_LOW
from trio_netstack.proto.udp import UdpDemux
from trio_netstack.wire import ipv4 as wip
from trio_netstack.wire import udp as wudp
from trio_netstack.wire.addr import ip_from_str

ME = ip_from_str("192.0.2.2")
PEER = ip_from_str("192.0.2.1")


def delivery(sport: int, dport: int, payload: bytes = b"x", src: int = PEER) -> Delivery:
    seg = wudp.build(src, ME, sport, dport, payload)
    header, data = wip.parse_untrusted(
        wip.build_header(src=src, dst=ME, protocol=17, payload_length=len(seg), ident=1) + seg
    )
    return Delivery(header, data, 0, False)


def demux(seed: int = 1) -> UdpDemux[str]:
    return UdpDemux(random.Random(seed).randrange)


def test_most_specific_socket_wins() -> None:
    d = demux()
    wild = d.bind("wild", 0, 53)
    conn = d.bind("conn", ME, 54)
    conn.remote_ip, conn.remote_port = PEER, 1000
    got = d.input_untrusted(delivery(1000, 53), trusted=False)
    assert got is not None and got.endpoint is wild and got.payload == b"x"
    assert d.input_untrusted(delivery(1000, 54), trusted=False).endpoint is conn  # type: ignore[union-attr]
    assert d.input_untrusted(delivery(1001, 54), trusted=False) is None  # wrong peer
    [request] = d.take_icmp_requests()  # RFC 1122 4.1.3.1: port unreachable
    assert (request.type, request.code) == (3, 3)


def test_bind_conflicts() -> None:
    d = demux()
    d.bind("a", 0, 500)
    with pytest.raises(OSError) as info:
        d.bind("b", ME, 500)
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(ValueError):
        d.bind("c", 0, 70000)


def test_ephemeral_ports_random_and_distinct() -> None:
    d = demux()
    ports = [d.bind(str(i), 0, 0).local_port for i in range(200)]
    assert len(set(ports)) == 200
    assert all(EPHEMERAL_LOW <= p <= EPHEMERAL_HIGH for p in ports)
    assert ports != sorted(ports)  # not sequential (RFC 6056)
    other = demux(seed=2)
    assert other.bind("x", 0, 0).local_port != ports[0]


def test_icmp_error_matched_by_quoted_ports() -> None:
    d = demux()
    bound = d.bind("a", 0, 4000)
    conn = d.bind("c", ME, 4001)
    conn.remote_ip, conn.remote_port = PEER, 53

    def report(sport: int, dport: int) -> IcmpErrorReport:
        quoted = wudp.build(ME, PEER, sport, dport, b"q")
        header, _ = wip.parse_untrusted(
            wip.build_header(src=ME, dst=PEER, protocol=17, payload_length=len(quoted), ident=1)
            + quoted
        )
        return IcmpErrorReport(PEER, 3, 3, header, quoted[:8], None, 0.0)

    assert d.match_error(report(4000, 9)) is bound
    assert d.match_error(report(4001, 53)) is conn
    assert d.match_error(report(4001, 54)) is None  # not the connected peer
    assert d.match_error(report(4002, 53)) is None


def test_unbind_frees_port() -> None:
    d = demux()
    ep = d.bind("a", 0, 7)
    d.unbind(ep)
    d.bind("b", 0, 7)


def test_bad_checksum_and_trusted_flag() -> None:
    d = demux()
    d.bind("a", 0, 7)
    bad = delivery(1, 7)
    raw = bytearray(bad.payload)
    raw[6] ^= 0xFF
    bad.payload = memoryview(bytes(raw))
    assert d.input_untrusted(bad, trusted=False) is None
    assert d.counters["udp_bad_checksum"] == 1
    # Offloaded by the local kernel: not verified (the checksum field is unfilled).
    assert d.input_untrusted(bad, trusted=True) is not None
