"""RACK time-based loss detection and tail loss probes (RFC 8985), with explicit time."""

from __future__ import annotations

import pytest

from trio_netstack.proto.tcp.connection import TcpConfig, TcpConnection
from trio_netstack.proto.tcp.rack import Rack
from trio_netstack.proto.tcp.sack import Scoreboard
from trio_netstack.proto.tcp.seq import Seq
from trio_netstack.wire import tcp as wtcp

A_IP, B_IP = 0xC0000201, 0xC0000202


def sack(sb: Scoreboard, start: int, end: int) -> Scoreboard:
    """The scoreboard after the peer reported [start, end) SACKed."""
    sb.update(Seq(1000), Seq(100000), ((start, end),))
    return sb


def seg(n: int) -> tuple[Seq, Seq]:
    return Seq(1000 + 100 * n), Seq(1100 + 100 * n)


def test_older_segments_lost_after_reordering_window() -> None:
    rack = Rack()
    sb = Scoreboard()
    rack.sample_rtt(8.0)  # min RTT 8 -> reordering window 2 (RFC 8985 6.2 step 4)
    for n, t in enumerate((0.0, 1.0, 2.0)):
        rack.on_send(*seg(n), t)
    # Segment 2 (sent at t=2) is SACKed at t=10: RACK.rtt = 8.
    rack.on_ack(Seq(1000), sack(sb, 1200, 1300), 10.0)
    assert rack.xmit_ts == 2.0 and rack.rtt == 8.0
    deadline = rack.detect_loss(10.0, in_recovery=False)
    segs = list(rack.segments)
    # seg 0: 0 + 8 + 2 <= 10 -> lost now; seg 1: 1 + 8 + 2 = 11 -> look again at 11.
    assert [s.lost for s in segs] == [True, False, False]
    assert deadline == pytest.approx(11.0)
    assert rack.detect_loss(11.0, in_recovery=False) is None
    assert [s.lost for s in segs] == [True, True, False]
    assert rack.pipe() == 0  # two lost, one SACKed


def test_reordering_window_zero_in_recovery_until_reordering_seen() -> None:
    rack = Rack()
    rack.sample_rtt(4.0)
    assert rack.reo_wnd(in_recovery=False) == 1.0
    assert rack.reo_wnd(in_recovery=True) == 0.0
    rack.reordering_seen = True
    assert rack.reo_wnd(in_recovery=True) == 1.0


def test_reordering_detected_when_older_segment_delivered_late() -> None:
    rack = Rack()
    sb = Scoreboard()
    for n in range(3):
        rack.on_send(*seg(n), 0.0)
    rack.on_ack(Seq(1000), sack(sb, 1200, 1300), 1.0)
    assert not rack.reordering_seen
    rack.on_ack(Seq(1000), sack(sb, 1100, 1300), 1.1)  # seg 1 arrives after seg 2
    assert rack.reordering_seen


def test_retransmission_is_not_lost_while_newer_than_delivered() -> None:
    rack = Rack()
    sb = Scoreboard()
    rack.on_send(*seg(0), 0.0)
    rack.on_send(*seg(1), 0.0)
    rack.on_ack(Seq(1000), sack(sb, 1100, 1200), 1.0)
    rack.detect_loss(1.0, in_recovery=True)
    assert rack.first_lost() is not None
    rack.on_send(*seg(0), 1.0)  # the retransmission, after the delivered segment
    assert rack.first_lost() is None
    assert rack.detect_loss(1.5, in_recovery=True) is None
    assert rack.first_lost() is None


def connected() -> tuple[TcpConnection, TcpConnection]:
    a = TcpConnection(TcpConfig(), (A_IP, 1), (B_IP, 2), Seq(10), 7, 1460, 0.0)
    b = TcpConnection(TcpConfig(), (B_IP, 2), (A_IP, 1), Seq(99), 0, 1460, 0.0)
    a.connect(0.0)
    [syn] = [wtcp.parse_untrusted(x, A_IP, B_IP) for x in a.out]
    a.out.clear()
    b.accept_syn(syn, 0.1)
    [synack] = [wtcp.parse_untrusted(x, B_IP, A_IP) for x in b.out]
    b.out.clear()
    a.on_segment(synack, 0.5)  # RTT sample 0.5: RTO 1.5 (RFC 6298 2.2)
    for x in a.out:
        b.on_segment(wtcp.parse_untrusted(x, A_IP, B_IP), 0.6)
    a.out.clear()
    return a, b


def test_tail_loss_probe_timing_and_content() -> None:
    a, _ = connected()
    srtt = a.rtt.srtt
    assert srtt is not None
    a.app_send(b"x" * 3 * a.mss, 1.0)  # three full segments
    assert len(a.out) == 3
    a.out.clear()
    # RFC 8985 7.2: PTO = 2 * SRTT, earlier than the RTO.
    assert a.pto_at == pytest.approx(1.0 + 2 * srtt)
    assert a.rto_at is not None and a.pto_at < a.rto_at
    a.handle_timer(a.pto_at)
    # Nothing new to send: the probe is the last segment again (RFC 8985 7.3).
    [probe] = [wtcp.parse_untrusted(x, A_IP, B_IP) for x in a.out]
    assert probe.seq == (a.snd_max - len(probe.payload)) & 0xFFFFFFFF
    assert a.tlp_probes == 1 and a.pto_at is None
    assert a.rto_at is not None


def test_single_segment_pto_waits_for_a_delayed_ack() -> None:
    a, _ = connected()
    srtt = a.rtt.srtt
    assert srtt is not None
    a.app_send(b"y" * 100, 1.0)
    # One segment out: add the worst-case delayed ACK (RFC 8985 7.2 WCDelAckT).
    assert a.pto_at == pytest.approx(1.0 + 2 * srtt + 0.2)
    assert a.rto_at == pytest.approx(1.0 + 1.5)


def test_no_probe_when_the_rto_comes_first() -> None:
    a, _ = connected()
    for _ in range(50):
        a.rtt.sample(0.01)  # a LAN: SRTT settles near 10 ms, the RTO at its 200 ms floor
    srtt = a.rtt.srtt
    assert srtt is not None and srtt < 0.02 and a.rtt.rto == pytest.approx(0.2)
    a.app_send(b"z" * 10, 1.0)
    [sent] = [wtcp.parse_untrusted(x, A_IP, B_IP) for x in a.take_segments()]
    # One segment out: PTO = 2 * SRTT + WCDelAckT (RFC 8985 7.2) would come after the RTO,
    # which is due first; RFC 8985 7.2 arms no probe then.
    assert a.rto_at == pytest.approx(1.2)
    assert 1.0 + 2 * srtt + 0.2 > a.rto_at
    assert a.pto_at is None
    # The next thing due is the RTO, and when it fires it is a timeout, not a probe.
    assert a.get_timer() == a.rto_at
    a.handle_timer(a.rto_at)
    [resent] = [wtcp.parse_untrusted(x, A_IP, B_IP) for x in a.take_segments()]
    assert a.tlp_probes == 0 and a.counters.get("tlp_probes", 0) == 0
    assert a.timeouts == 1
    assert (resent.seq, resent.payload) == (sent.seq, sent.payload)


def test_dsack_widens_the_reordering_window_for_a_while() -> None:
    rack = Rack()
    rack.sample_rtt(4.0)
    assert rack.reo_wnd(in_recovery=False) == 1.0
    rack.on_dsack(10.0)
    assert rack.reordering_seen and rack.reo_wnd(in_recovery=True) == 2.0
    rack.on_dsack(11.0)  # within one min RTT of the last bump: no further growth
    assert rack.reo_wnd(in_recovery=False) == 2.0
    rack.on_dsack(15.0)
    assert rack.reo_wnd(in_recovery=False) == 3.0
    assert rack.reo_wnd(in_recovery=False, srtt=2.5) == 2.5  # capped at SRTT
    for _ in range(16):
        rack.on_recovery_end()
    assert rack.reo_wnd(in_recovery=False) == 1.0


def test_receiver_reports_duplicates_with_dsack() -> None:
    a, b = connected()
    a.nodelay = True
    a.app_send(b"data", 2.0)
    [segment] = [wtcp.parse_untrusted(x, A_IP, B_IP) for x in a.out]
    a.out.clear()
    b.on_segment(segment, 2.1)
    b.handle_timer(3.0)  # delayed ACK
    b.out.clear()
    b.on_segment(segment, 3.1)  # the same segment again (a spurious retransmission)
    [ack] = [wtcp.parse_untrusted(x, B_IP, A_IP) for x in b.out]
    # RFC 2883: the first SACK block names the duplicate, below the cumulative ACK.
    assert ack.options.sack_blocks == ((segment.seq, (segment.seq + 4) & 0xFFFFFFFF),)
    assert ack.ack == (segment.seq + 4) & 0xFFFFFFFF


def test_partial_retransmission_splits_the_record() -> None:
    rack = Rack()
    sb = Scoreboard()
    rack.on_send(Seq(1000), Seq(2448), 0.0)
    rack.on_send(Seq(2448), Seq(3896), 0.0)
    rack.on_ack(Seq(1000), sack(sb, 2448, 3896), 1.0)
    rack.detect_loss(1.0, in_recovery=True)
    [lost] = [s for s in rack.segments if s.lost]
    assert (lost.start, lost.end) == (Seq(1000), Seq(2448))
    # Only 1436 bytes fit beside the SACK option: the rest stays lost, to be resent next.
    rack.on_send(Seq(1000), Seq(2436), 1.0)
    first = rack.first_lost()
    assert first is not None and (first.start, first.end) == (Seq(2436), Seq(2448))
    assert rack.pipe() == 1436


def test_super_segments_when_the_device_cuts_them() -> None:
    a, _ = connected()
    a.gso_limit = 64000
    a.gso_mtu = a.mss + 40 + 12  # the device cuts at exactly our segment size
    a.app_send(bytes(20 * a.mss + 100), 2.0)
    big = wtcp.parse_untrusted(a.out[0], A_IP, B_IP)
    # Whole MSS pieces in one super-segment; RACK tracks each wire segment.
    assert len(big.payload) % a.mss == 0 and len(big.payload) > a.mss
    assert len(a.rack.segments) >= len(big.payload) // a.mss
    assert all(s.length <= a.mss for s in a.rack.segments)
    # A device that cuts at another size gets plain segments.
    b, _ = connected()
    b.gso_limit = 64000
    b.gso_mtu = 9000
    b.app_send(bytes(5 * b.mss), 2.0)
    assert all(len(wtcp.parse_untrusted(x, A_IP, B_IP).payload) <= b.mss for x in b.out)
