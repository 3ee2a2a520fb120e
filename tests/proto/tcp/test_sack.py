"""The SACK scoreboard (RFC 6675) and NewReno recovery without SACK (RFC 6582)."""

from __future__ import annotations

import random

from trio_netstack.proto.tcp.connection import ESTABLISHED, TcpConfig
from trio_netstack.proto.tcp.sack import MAX_RANGES, Scoreboard
from trio_netstack.proto.tcp.seq import Seq
from trio_netstack.testing.tcp import Wire, connected, make

UNA = Seq(1000)
MAX = Seq(20000)


def test_merges_and_prunes() -> None:
    sb = Scoreboard()
    assert sb.update(UNA, MAX, ((3000, 4000), (5000, 6000))) == 2000
    assert sb.update(UNA, MAX, ((4000, 5000),)) == 1000  # fills the gap: one range
    assert sb.ranges == [(Seq(3000), Seq(6000))]
    assert sb.highest() == Seq(6000)
    # The cumulative ACK moves past part of it.
    sb.update(Seq(4500), MAX, ())
    assert sb.ranges == [(Seq(4500), Seq(6000))]
    assert sb.sacked_bytes() == 1500


def test_holes_and_pipe_inputs() -> None:
    sb = Scoreboard()
    sb.update(UNA, MAX, ((2000, 3000), (4000, 5000)))
    assert sb.next_hole(UNA) == (UNA, Seq(2000))
    assert sb.next_hole(Seq(2000)) == (Seq(3000), Seq(4000))
    assert sb.next_hole(Seq(4500)) is None  # nothing SACKed above: not a hole yet
    assert sb.hole_bytes_from(UNA) == 1000 + 1000
    assert sb.sacked_end(Seq(2500)) == Seq(3000) and sb.sacked_end(Seq(3500)) is None


def test_dsack_and_bogus_blocks() -> None:
    sb = Scoreboard()
    sb.update(UNA, MAX, ((500, 900),))  # below snd_una: a duplicate (RFC 2883)
    sb.update(UNA, MAX, ((30000, 31000),))  # beyond snd_max: ignored
    sb.update(UNA, MAX, ((5000, 4000),))  # inverted: ignored
    assert sb.dsacks == 1 and not sb


def test_bounded() -> None:
    sb = Scoreboard()
    for i in range(500):
        start = 1000 + 10 * i
        sb.update(UNA, Seq(100000), ((start + 5, start + 8),))
    assert len(sb.ranges) <= MAX_RANGES


def test_newreno_partial_ack_retransmits_next_hole() -> None:
    plain = TcpConfig(sack=False)
    a = make(plain, side="a")
    b = make(plain, side="b", iss=777)
    wire = Wire(a, b)
    a.connect(0.0)
    wire.run(0.0)
    assert a.state == ESTABLISHED and not a.sack_ok
    data = random.Random(4).randbytes(14 * a.mss)
    a.app_send(data, 0.0)
    first = len(wire.log)
    wire.run(0.0, drop={first + 2, first + 6})  # two holes in one window
    assert a.fast_retransmits == 1
    # RFC 6582 3.2 step 5: the partial ACK that the first repair brings triggers the
    # retransmission of the second hole, without a timeout.
    assert a.counters["partial_ack_retransmits"] >= 1
    assert a.timeouts == 0
    got = b.app_receive(1 << 20, 0.0)
    assert got == data


def test_spurious_recovery_is_undone_by_dsack() -> None:
    """A segment is only late (reordered): the retransmission is D-SACKed, cwnd comes back."""
    a, b, wire = connected()
    a.app_send(bytes(10 * a.mss), 1.0)
    segments = wire.take(a)
    late = segments.pop(2)  # held back: reordering, not loss
    for seg in segments:
        b.on_segment(seg, 1.0)
    b.flush(1.0)
    for ack in wire.take(b):
        a.on_segment(ack, 1.01)
    assert a.in_recovery and a.fast_retransmits == 1
    cut = a.cc.cwnd
    assert cut < a.prior_cwnd
    retransmissions = [s for s in wire.take(a) if s.seq == late.seq]
    assert retransmissions
    b.on_segment(retransmissions[0], 1.02)  # fills the hole
    b.on_segment(late, 1.03)  # the original, late: a duplicate now -> D-SACK
    b.flush(1.03)
    for ack in wire.take(b):
        a.on_segment(ack, 1.04)
    assert a.undone == 1 and a.counters["spurious_recoveries_undone"] == 1
    assert a.cc.cwnd >= a.prior_cwnd > cut
