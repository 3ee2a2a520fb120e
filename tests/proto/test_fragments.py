"""Fragmentation and reassembly with explicit time: orders, duplicates, overlaps, limits."""

from __future__ import annotations

import errno
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_netstack.proto.ipv4 import Ipv4Machine, OutDatagram, fragment
from trio_netstack.proto.reassembly import Reassembler, ReassemblyConfig
from trio_netstack.proto.route import IfAddress, RouteTable
from trio_netstack.wire import ipv4 as wip
from trio_netstack.wire.addr import ip_from_str

ME = ip_from_str("192.0.2.2")
PEER = ip_from_str("192.0.2.1")


def parsed(packet: bytes) -> tuple[wip.Ipv4Header, memoryview]:
    return wip.parse_untrusted(packet)


def frags(payload: bytes, mtu: int = 100, ident: int = 1, src: int = PEER) -> list[bytes]:
    return fragment(src, ME, wip.PROTO_UDP, payload, ident, 64, 0, mtu)


def feed(r: Reassembler, packets: list[bytes], now: float = 0.0) -> list[bytes]:
    done = []
    for p in packets:
        h, d = parsed(p)
        out = r.input(h, d, now)
        if out is not None:
            assert out[0].total_length == out[0].header_length + len(out[1])
            assert not out[0].is_fragment
            done.append(out[1])
    return done


def test_fragment_layout() -> None:
    payload = bytes(range(256)) * 2
    packets = frags(payload, mtu=100)
    headers = [parsed(p)[0] for p in packets]
    assert all(len(p) <= 100 for p in packets)
    assert [h.fragment_offset for h in headers] == [0, 80, 160, 240, 320, 400, 480]
    assert [h.more_fragments for h in headers] == [True] * 6 + [False]
    assert all((h.total_length - 20) % 8 == 0 for h in headers[:-1])
    assert b"".join(bytes(parsed(p)[1]) for p in packets) == payload


def test_copied_options_only_in_later_fragments() -> None:
    # Record route (7, not copied) and a copied option (0x88 stream id, length 4).
    options = bytes([7, 7, 4, 0, 0, 0, 0, 0x88, 4, 0, 1, 0])
    packets = fragment(PEER, ME, 17, bytes(200), 9, 64, 0, 100, options=options)
    first, second = parsed(packets[0])[0], parsed(packets[1])[0]
    assert first.options == options
    assert second.options == bytes([0x88, 4, 0, 1])


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_every_arrival_order(order: tuple[int, ...]) -> None:
    payload = bytes(random.Random(1).randbytes(300))
    packets = frags(payload, mtu=100)
    assert len(packets) == 4
    r = Reassembler()
    assert feed(r, [packets[i] for i in order]) == [payload]
    assert len(r) == 0 and r.bytes_held == 0


def test_duplicates_ignored() -> None:
    packets = frags(bytes(300))
    r = Reassembler()
    assert feed(r, [packets[0], packets[0], packets[2], packets[1], packets[2], packets[3]]) == [
        bytes(300)
    ]
    assert r.counters["duplicates"] == 2


def test_overlap_drops_whole_datagram() -> None:
    packets = frags(bytes(300))
    # Teardrop: a fragment at offset 40 overlapping the first one (0..80).
    _, d = parsed(packets[1])
    bad = wip.build_header(
        src=PEER, dst=ME, protocol=17, payload_length=80, ident=1, flags_fragment=wip.FLAG_MF | 5
    ) + bytes(d)
    r = Reassembler()
    assert feed(r, [packets[0], bad]) == []
    assert r.counters["overlaps"] == 1
    assert len(r) == 0 and r.bytes_held == 0
    # The rest arriving later starts a new datagram that never completes.
    assert feed(r, packets[1:]) == []


def test_too_long_datagram_dropped() -> None:
    r = Reassembler()
    # Offset 65528 with 16 bytes: ends beyond 65535 (ping of death).
    head = wip.build_header(
        src=PEER, dst=ME, protocol=1, payload_length=16, ident=3, flags_fragment=65528 >> 3
    )
    assert feed(r, [head + bytes(16)]) == []
    assert r.counters["too_long"] == 1 and len(r) == 0


def test_bad_middle_fragment_length() -> None:
    r = Reassembler()
    head = wip.build_header(
        src=PEER, dst=ME, protocol=1, payload_length=13, ident=3, flags_fragment=wip.FLAG_MF
    )
    assert feed(r, [head + bytes(13)]) == []
    assert r.counters["bad_fragment_length"] == 1


def test_timeout_reports_only_with_first_fragment() -> None:
    r = Reassembler(ReassemblyConfig(timeout=30.0))
    a = frags(bytes(300), ident=1)
    b = frags(bytes(300), ident=2)
    feed(r, [a[0], a[1]], now=0.0)  # has the first fragment
    feed(r, [b[2]], now=5.0)  # has not
    assert r.get_timer() == 30.0
    r.handle_timer(29.9)
    assert r.expired == []
    r.handle_timer(30.0)
    [expired] = r.expired
    assert expired.first is not None
    header, data = expired.first
    assert header.ident == 1 and header.fragment_offset == 0 and len(data) == 64
    r.handle_timer(35.0)
    assert [e.first for e in r.expired[1:]] == [None]
    assert len(r) == 0 and r.bytes_held == 0
    assert r.counters["timeouts"] == 2


def test_limits_evict_oldest() -> None:
    r = Reassembler(ReassemblyConfig(max_datagrams=10, max_bytes=10 * 200))
    for ident in range(100):
        feed(r, frags(bytes(300), ident=ident)[:1], now=float(ident))
    assert len(r) <= 10 and r.bytes_held <= 2000
    assert r.counters["evicted"] == 90
    # The survivors are the newest.
    assert r.get_timer() == 90.0 + 30.0


def test_fragment_flood_stays_bounded() -> None:
    cfg = ReassemblyConfig(max_bytes=256 * 1024)
    r = Reassembler(cfg)
    rng = random.Random(5)
    for ident in range(20000):
        src = PEER + rng.randrange(50)
        offset = rng.randrange(0, 8000) & ~7
        head = wip.build_header(
            src=src,
            dst=ME,
            protocol=17,
            payload_length=16,
            ident=ident,
            flags_fragment=wip.FLAG_MF | (offset >> 3),
        )
        h, d = parsed(head + bytes(16))
        assert r.input(h, d, ident * 0.001) is None
        assert r.bytes_held <= cfg.max_bytes and len(r) <= cfg.max_datagrams


def test_machine_fragments_and_reassembles() -> None:
    routes = RouteTable()
    routes.add_link(1, 576)
    routes.add_address(IfAddress(1, ME, 24))
    m = Ipv4Machine(routes, ident_secret=1)
    payload = bytes(random.Random(2).randbytes(3000))
    _, out = m.output(OutDatagram(PEER, wip.PROTO_UDP, payload))
    assert len(out) == 6 and all(len(p) <= 576 for _, p in out)
    # Deliver them to a machine owning PEER, reversed.
    routes_b = RouteTable()
    routes_b.add_link(1, 576)
    routes_b.add_address(IfAddress(1, PEER, 24))
    b = Ipv4Machine(routes_b, ident_secret=2)
    results = [b.input_untrusted(memoryview(p), 0, 0.0) for _, p in reversed(out)]
    assert results[:-1] == [None] * 5
    final = results[-1]
    assert final is not None and bytes(final.payload) == payload
    with pytest.raises(OSError) as info:
        m.output(OutDatagram(PEER, wip.PROTO_UDP, bytes(600), dont_fragment=True))
    assert info.value.errno == errno.EMSGSIZE
    with pytest.raises(OSError) as info:
        m.output(OutDatagram(PEER, wip.PROTO_UDP, bytes(65516)))
    assert info.value.errno == errno.EMSGSIZE


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 8191), st.integers(0, 200), st.booleans()),
        max_size=60,
    )
)
def test_random_fragments_stay_bounded(script: list[tuple[int, int, int, bool]]) -> None:
    cfg = ReassemblyConfig(max_datagrams=3, max_bytes=4000, max_fragments=16)
    r = Reassembler(cfg)
    now = 0.0
    for ident, offset_units, size, more in script:
        head = wip.build_header(
            src=PEER,
            dst=ME,
            protocol=17,
            payload_length=size,
            ident=ident,
            flags_fragment=(wip.FLAG_MF if more else 0) | offset_units,
        )
        h, d = parsed(head + bytes(size))
        out = r.input(h, d, now)
        if out is not None:
            assert out[0].total_length == out[0].header_length + len(out[1]) <= 65535
        assert len(r) <= cfg.max_datagrams and r.bytes_held <= cfg.max_bytes
        now += 1.0
        r.handle_timer(now)
