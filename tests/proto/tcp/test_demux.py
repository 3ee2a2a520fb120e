"""The TCP demultiplexer: RSTs for closed ports, listeners and backlogs, TIME_WAIT."""

from __future__ import annotations

import random

from trio_netstack.proto.icmp import IcmpErrorReport
from trio_netstack.proto.ipv4 import Delivery
from trio_netstack.proto.tcp.connection import CLOSED, ESTABLISHED, SYN_RECEIVED, TcpConfig
from trio_netstack.proto.tcp.demux import DemuxConfig, TcpDemux
from trio_netstack.proto.tcp.isn import IsnGenerator
from trio_netstack.wire import ipv4 as wip
from trio_netstack.wire import tcp as wtcp

ME, PEER = 0xC0000202, 0xC0000201


def demux(**cfg: int) -> TcpDemux[str]:
    return TcpDemux(
        TcpConfig(), IsnGenerator(bytes(range(32))), random.Random(1).randrange, DemuxConfig(**cfg)
    )


def delivery(segment: bytes, src: int = PEER, broadcast: bool = False) -> Delivery:
    packet = (
        wip.build_header(src=src, dst=ME, protocol=6, payload_length=len(segment), ident=1)
        + segment
    )
    header, data = wip.parse_untrusted(packet)
    return Delivery(header, data, 0, broadcast)


def seg(
    flags: int,
    seq: int = 100,
    ack: int = 0,
    sport: int = 5555,
    dport: int = 80,
    payload: bytes = b"",
) -> bytes:
    return wtcp.build(PEER, ME, sport, dport, seq, ack, flags, 1000, payload)


def sent(d: TcpDemux[str]) -> list[wtcp.TcpSegment]:
    out = [wtcp.parse_untrusted(s, src, dst) for src, dst, s in d.take_output()]
    assert not d.has_output
    return out


def test_rst_for_closed_port() -> None:
    d = demux()
    assert d.input_untrusted(delivery(seg(wtcp.SYN, seq=100)), False, 1460, 0.0) is None
    [rst] = sent(d)
    # RFC 9293 3.10.7.1: no ACK in the offending segment -> RST|ACK, ack = seq + len.
    assert rst.flags == wtcp.RST | wtcp.ACK and rst.seq == 0 and rst.ack == 101
    d.input_untrusted(delivery(seg(wtcp.ACK, seq=5, ack=777, payload=b"xyz")), False, 1460, 0.0)
    [rst] = sent(d)
    assert rst.flags == wtcp.RST and rst.seq == 777
    d.input_untrusted(delivery(seg(wtcp.RST, seq=5)), False, 1460, 0.0)
    assert not d.has_output  # never a RST for a RST
    assert d.counters["rst_sent"] == 2


def test_broadcast_and_bad_checksum_dropped() -> None:
    d = demux()
    d.input_untrusted(delivery(seg(wtcp.SYN), broadcast=True), False, 1460, 0.0)
    bad = bytearray(seg(wtcp.SYN))
    bad[17] ^= 1
    d.input_untrusted(delivery(bytes(bad)), False, 1460, 0.0)
    assert sent(d) == []
    assert d.counters["broadcast_dropped"] == 1 and d.counters["tcp_bad_checksum"] == 1


def test_listener_accepts_within_backlog() -> None:
    d = demux()
    listener = d.listen(0, 80, 2, "svc")
    for port in (1001, 1002, 1003):
        d.input_untrusted(delivery(seg(wtcp.SYN, sport=port)), False, 1460, 0.0)
    assert len(listener.pending) == 2
    assert d.counters["listen_overflow"] == 1
    assert all(lst is listener for _, lst in d.accepted)
    conns = [c for c, _ in d.take_accepted()]
    assert d.take_accepted() == []
    assert all(c.state == SYN_RECEIVED for c in conns)
    synacks = [wtcp.parse_untrusted(s, ME, PEER) for c in conns for s in c.out]
    assert all(s.flags == wtcp.SYN | wtcp.ACK and s.ack == 101 for s in synacks)
    # The third client's ACK completes its handshake.
    conn = conns[0]
    synack = synacks[0]
    found = d.input_untrusted(
        delivery(seg(wtcp.ACK, seq=101, ack=synack.seq + 1, sport=1001)), False, 1460, 0.0
    )
    assert found is not None and found[0] is conn
    conn.on_segment(found[1], 0.0)
    assert conn.state == ESTABLISHED
    assert d.established(conn, listener) and listener.ready == [conn]


def test_unlisten_resets_the_unaccepted_connections() -> None:
    d = demux()
    listener = d.listen(0, 80, 5, "svc")
    for port in (1001, 1002):
        d.input_untrusted(delivery(seg(wtcp.SYN, sport=port)), False, 1460, 0.0)
    half_open, ready = (c for c, _ in d.accepted)
    synack = wtcp.parse_untrusted(ready.out.pop(), ME, PEER)
    found = d.input_untrusted(
        delivery(seg(wtcp.ACK, seq=101, ack=synack.seq + 1, sport=1002)), False, 1460, 0.0
    )
    assert found is not None
    ready.on_segment(found[1], 0.0)
    assert d.established(ready, listener)
    half_open.out.clear()
    assert d.unlisten(listener, 1.0) == [ready, half_open]
    for conn in (ready, half_open):
        assert conn.state == CLOSED
        [rst] = [wtcp.parse_untrusted(s, ME, PEER) for s in conn.out]
        assert rst.flags == wtcp.RST
    assert listener.ready == [] and not listener.pending and d.listeners == {}
    # The port is closed now: a new SYN is answered with a RST.
    d.input_untrusted(delivery(seg(wtcp.SYN, sport=1003)), False, 1460, 1.0)
    [rst] = sent(d)
    assert rst.flags == wtcp.RST | wtcp.ACK


def test_listener_conflicts() -> None:
    d = demux()
    d.listen(0, 80, 5, "a")
    try:
        d.listen(ME, 80, 5, "b")
    except OSError as exc:
        assert exc.errno == 98
    else:
        raise AssertionError("expected EADDRINUSE")


def test_time_wait_reacks_and_is_bounded() -> None:
    d = demux(max_time_wait=3)
    conns = []
    for port in range(4):
        c = d.connect(ME, PEER, 9000 + port, 1460, 0.0)
        c.out.clear()
        # Fake the finished life of the connection.
        c.time_wait_at = 60.0
        d.enter_time_wait(c, 0.0)
        conns.append(c)
    assert len(d.time_wait) == 3 and d.counters["time_wait_evicted"] == 1
    c = conns[-1]
    fin = wtcp.build(
        PEER, ME, 9003, c.local_port, c.rcv.rcv_nxt, c.snd_nxt, wtcp.FIN | wtcp.ACK, 1000
    )
    d.input_untrusted(delivery(fin), False, 1460, 1.0)
    [ack] = sent(d)
    assert ack.flags == wtcp.ACK and ack.seq == c.snd_nxt
    d.expire_time_wait(100.0)
    assert len(d.time_wait) == 0


def test_icmp_error_believed_only_for_a_sequence_number_in_flight() -> None:
    d = demux()
    c = d.connect(ME, PEER, 80, 1460, 0.0)
    [syn] = c.out

    def report(seq: int) -> IcmpErrorReport:
        quoted = syn[:4] + seq.to_bytes(4, "big")
        header, _ = wip.parse_untrusted(
            wip.build_header(src=ME, dst=PEER, protocol=6, payload_length=len(syn), ident=1) + syn
        )
        return IcmpErrorReport(PEER, 3, 1, header, quoted, None, 0.0)

    assert d.find_for_error(report(int(c.iss))) is c  # RFC 5927: snd_una..snd_max
    assert d.find_for_error(report(int(c.iss) + 2)) is None
    assert d.counters["icmp_error_out_of_window"] == 1


def test_isn_unpredictable_monotonic_and_never_zero() -> None:
    gen = IsnGenerator(bytes(range(32)))
    a = gen.isn(1, 2, 3, 4, 0.0)
    b = gen.isn(1, 2, 3, 4, 1.0)
    assert (b - a) % (1 << 32) == 250_000  # RFC 6528: the 4 us clock moves it on
    assert gen.isn(1, 2, 3, 5, 0.0) != a  # another 4-tuple, another offset
    other = IsnGenerator(bytes(range(1, 33)))
    assert other.isn(1, 2, 3, 4, 0.0) != a
    assert all(gen.isn(1, 2, 3, p, 0.0) != 0 for p in range(1000))
