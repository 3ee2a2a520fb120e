"""The TCP connection machine with explicit time: two machines wired together, or one
machine fed hand-made segments (a scripted peer)."""

from __future__ import annotations

import errno
import random

import pytest

from trio_netstack.proto.icmp import IcmpErrorReport
from trio_netstack.proto.tcp import seq as S
from trio_netstack.proto.tcp.connection import (
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    Keepalive,
    TcpConfig,
    TcpConnection,
    window_shift,
)
from trio_netstack.proto.tcp.isn import tsval
from trio_netstack.proto.tcp.seq import Seq
from trio_netstack.testing.tcp import (
    A_IP,
    A_PORT,
    B_IP,
    B_PORT,
    Wire,
    connected,
    make,
    parse,
    transfer,
)
from trio_netstack.wire import icmp as wicmp
from trio_netstack.wire import ipv4 as wip
from trio_netstack.wire import tcp as wtcp

# ---------------------------------------------------------------- handshakes


def test_three_way_handshake_negotiates_options() -> None:
    a, b, wire = connected()
    syn = wire.log[0][1]
    assert syn.flags == wtcp.SYN
    assert syn.options.mss == 1460 and syn.options.sack_permitted
    assert syn.options.wscale == window_shift(TcpConfig().receive_buffer)
    assert syn.options.timestamp is not None and syn.options.timestamp[1] == 0
    synack = wire.log[1][1]
    assert synack.flags == wtcp.SYN | wtcp.ACK and synack.ack == 1001
    assert synack.options.timestamp is not None
    assert synack.options.timestamp[1] == syn.options.timestamp[0]  # echoed
    assert a.ts_ok and b.ts_ok and a.sack_ok and b.sack_ok
    assert a.mss == 1460 - 12  # timestamps cost 12 bytes per segment
    assert a.snd_wscale == b.rcv_wscale and b.snd_wscale == a.rcv_wscale


def test_options_off_when_peer_lacks_them() -> None:
    plain = TcpConfig(timestamps=False, sack=False, window_scaling=False)
    a = make(side="a")
    b = make(plain, side="b", iss=7)
    wire = Wire(a, b)
    a.connect(0.0)
    wire.run(0.0)
    assert a.state == ESTABLISHED
    assert not (a.ts_ok or a.sack_ok) and a.snd_wscale == 0 and a.rcv_wscale == 0
    assert a.mss == 1460


def test_no_mss_option_means_536() -> None:
    a = make()
    a.connect(0.0)
    a.out.clear()
    synack = wtcp.build(B_IP, A_IP, B_PORT, A_PORT, 5, 1001, wtcp.SYN | wtcp.ACK, 8192)
    a.on_segment(parse(synack, B_IP, A_IP), 0.1)
    assert a.state == ESTABLISHED and a.mss == 536


def test_simultaneous_open() -> None:
    a = make(side="a", iss=100)
    b = make(side="b", iss=200)
    a.connect(0.0)
    b.connect(0.0)
    syn_a = parse(a.out.pop(), A_IP, B_IP)
    syn_b = parse(b.out.pop(), B_IP, A_IP)
    a.on_segment(syn_b, 0.01)
    b.on_segment(syn_a, 0.01)
    assert a.state == SYN_RECEIVED and b.state == SYN_RECEIVED
    wire = Wire(a, b, b_listens=False)
    wire.run(0.02)
    assert a.state == ESTABLISHED and b.state == ESTABLISHED
    assert a.counters["simultaneous_opens"] == 1


def test_syn_retransmission_backoff_then_timeout() -> None:
    a = make(TcpConfig(syn_retries=3))
    a.connect(0.0)
    times = [0.0]
    a.out.clear()
    now = 0.0
    for _ in range(10):
        timer = a.get_timer()
        if timer is None:
            break
        now = timer
        a.handle_timer(now)
        if a.out:
            times.append(now)
            a.out.clear()
    # RFC 6298 5.5 / RFC 6298 2.1: 1 s initial RTO, doubled per retry.
    assert times == [0.0, 1.0, 3.0, 7.0]
    assert now == 15.0 and a.state == CLOSED
    assert isinstance(a.error, TimeoutError)


def test_rst_to_syn_is_refused_only_if_it_acks_our_syn() -> None:
    a = make()
    a.connect(0.0)
    bad = wtcp.build(B_IP, A_IP, B_PORT, A_PORT, 0, 999, wtcp.RST | wtcp.ACK, 0)
    a.on_segment(parse(bad, B_IP, A_IP), 0.1)
    assert a.state == SYN_SENT  # RFC 5961 3.2 / RFC 9293: does not ACK our SYN
    good = wtcp.build(B_IP, A_IP, B_PORT, A_PORT, 0, 1001, wtcp.RST | wtcp.ACK, 0)
    a.on_segment(parse(good, B_IP, A_IP), 0.1)
    assert a.state == CLOSED and isinstance(a.error, ConnectionRefusedError)


# ---------------------------------------------------------------- ICMP errors


def icmp_about(conn: TcpConnection, mtype: int, code: int) -> IcmpErrorReport:
    """An ICMP error quoting the last segment ``conn`` sent (RFC 792: header + 8 bytes)."""
    segment = conn.out[-1]
    packet = wip.build_header(
        src=conn.local_ip, dst=conn.remote_ip, protocol=6, payload_length=len(segment), ident=1
    )
    original, _ = wip.parse_untrusted(packet + segment)
    return IcmpErrorReport(B_IP, mtype, code, original, bytes(segment[:8]), None, 0.0)


def test_host_unreachable_aborts_an_opening_connection() -> None:
    a = make()
    a.connect(0.0)
    report = icmp_about(a, wicmp.DEST_UNREACHABLE, wicmp.UNREACH_HOST)
    assert a.on_icmp_error(report, None, 0.1)
    assert a.state == CLOSED
    assert type(a.error) is OSError and a.error.errno == errno.EHOSTUNREACH
    assert a.error.strerror == "No route to host"


def test_icmp_errors_in_a_synchronized_state_are_soft() -> None:
    a, _b, _wire = connected()
    a.app_send(b"x", 0.0)
    report = icmp_about(a, wicmp.DEST_UNREACHABLE, wicmp.UNREACH_PORT)
    assert a.on_icmp_error(report, None, 0.1)
    assert a.state == ESTABLISHED and a.error is None
    assert isinstance(a.soft_error, ConnectionRefusedError)


def test_time_exceeded_does_not_abort_an_opening_connection() -> None:
    a = make()
    a.connect(0.0)
    assert a.on_icmp_error(icmp_about(a, wicmp.TIME_EXCEEDED, 0), None, 0.1)
    assert a.state == SYN_SENT and a.soft_error is not None


def test_fragmentation_needed_lowers_the_mss() -> None:
    a, _b, _wire = connected()
    a.app_send(bytes(3000), 0.0)
    report = icmp_about(a, wicmp.DEST_UNREACHABLE, wicmp.UNREACH_FRAG_NEEDED)
    assert not a.on_icmp_error(report, None, 0.1)  # no path MTU given: nothing to do
    assert a.local_mss == 1460
    assert not a.on_icmp_error(report, 1000, 0.1)
    assert a.local_mss == 960 and a.error is None and a.soft_error is None
    assert a.mss == 960 - 12


# ---------------------------------------------------------------- data


@pytest.mark.parametrize("iss", [0xFFFFFF00, 0xFFFFFFFF, 0x7FFFFFFF, 5])
def test_transfer_across_sequence_wrap(iss: int) -> None:
    a, b, wire = connected(iss_a=iss, iss_b=(iss + 12345) & 0xFFFFFFFF)
    data = random.Random(iss).randbytes(300_000)
    got, now = transfer(a, b, wire, data)
    assert got == data
    wire.advance(now + 1.0)  # b's delayed ACK
    wire.run(now + 1.0)
    assert a.snd_una == S.add(a.iss, 1 + len(data))


def test_loss_recovered_by_fast_retransmit() -> None:
    a, b, wire = connected()
    data = random.Random(3).randbytes(100_000)
    a.app_send(data, 0.0)
    start = len(wire.log)
    wire.run(0.0, drop={start + 3})  # lose the fourth data segment
    got = b.app_receive(1 << 20, 0.0) or b""
    assert len(got) < len(data)
    assert a.fast_retransmits == 1 and a.timeouts == 0
    now = 0.0
    for _ in range(100):
        chunk = b.app_receive(1 << 20, now)
        if chunk:
            got += chunk
        if len(got) == len(data):
            break
        now += 0.01
        wire.advance(now)
        wire.run(now)
    assert got == data
    assert b.counters["out_of_order_segments"] > 0
    # The receiver described its out-of-order data with SACK blocks.
    assert any(seg.options.sack_blocks for name, seg in wire.log if name == "b>a")


def test_rto_recovers_a_lost_tail() -> None:
    a, b, wire = connected()
    a.app_send(b"x" * 100, 0.0)
    start = len(wire.log)
    wire.run(0.0, drop={start})
    assert b.app_receive(1000, 0.0) is None
    timer = a.get_timer()
    assert timer is not None and 0.19 <= timer <= 1.0
    wire.advance(timer)
    wire.run(timer)
    assert b.app_receive(1000, timer) == b"x" * 100
    assert a.timeouts == 1 and a.retransmitted_segments == 1


def test_out_of_order_is_acked_at_once_in_order_is_delayed() -> None:
    a, b, wire = connected(TcpConfig(delayed_ack=0.04))
    a.nodelay = True
    a.app_send(b"one", 0.0)
    [seg] = wire.take(a)
    b.on_segment(seg, 0.0)
    b.flush(0.0)
    assert not b.has_output  # delayed
    assert b.get_timer() == pytest.approx(0.04)
    b.handle_timer(0.04)
    [ack] = wire.take(b)
    assert ack.ack == S.add(b.irs, 4)
    # A segment beyond a hole is ACKed immediately, with a SACK block.
    hole = wtcp.build(
        A_IP,
        B_IP,
        A_PORT,
        B_PORT,
        (a.snd_nxt + 10) & 0xFFFFFFFF,
        b.snd_nxt,
        wtcp.ACK,
        1000,
        b"later",
        timestamp=(tsval(0.05, a.ts_offset), b.ts_recent),
    )
    b.on_segment(parse(hole, A_IP, B_IP), 0.05)
    [dup] = wire.take(b)
    assert dup.ack == S.add(b.irs, 4)
    assert dup.options.sack_blocks == (
        ((a.snd_nxt + 10) & 0xFFFFFFFF, (a.snd_nxt + 15) & 0xFFFFFFFF),
    )


def test_a_batch_of_in_order_segments_is_acked_once() -> None:
    a, b, wire = connected()
    a.app_send(bytes(20 * 1460), 0.0)
    segs = wire.take(a)
    assert len(segs) == 10  # the initial window (RFC 6928)
    b.on_segments(segs, 0.0)
    [ack] = wire.take(b)  # one ACK for the batch, not one per two segments
    assert ack.ack == S.add(a.iss, 1 + sum(len(seg.payload) for seg in segs))
    assert b.get_timer() != 0.0 and b.ack_at_end is False
    # Fed one by one (no batch), every second segment is acknowledged.
    a.on_segment(ack, 0.0)
    segs = wire.take(a)
    for seg in segs:
        b.on_segment(seg, 0.001)
    assert len(wire.take(b)) == len(segs) // 2


def test_a_batch_acks_at_least_every_64_kib() -> None:
    a, b, wire = connected(TcpConfig(send_buffer=1 << 20, receive_buffer=1 << 20))
    b.app_send(b"!", 0.0)
    wire.run(0.0)  # a learns b's scaled window (a SYN's window is never scaled)
    a.cc.cwnd = 200 * 1460  # a window far beyond one stretch ACK
    a.app_send(bytes(100 * 1460), 0.0)
    segs = wire.take(a)
    assert len(segs) == 100
    b.on_segments(segs, 0.0)
    acks = wire.take(b)
    size = len(segs[0].payload)  # the MSS less the timestamp option
    # An ACK as soon as 64 KiB are unacknowledged (46 segments), then the batch's end.
    assert [S.diff(Seq(ack.ack), a.iss) - 1 for ack in acks] == [46 * size, 92 * size, 100 * size]


def test_out_of_order_in_a_batch_is_still_acked_at_once() -> None:
    a, b, wire = connected()
    a.app_send(bytes(6 * 1460), 0.0)
    segs = wire.take(a)
    b.on_segments(segs[:1] + segs[2:], 0.0)  # the second segment was lost
    acks = wire.take(b)
    # Four duplicate ACKs with SACK blocks, one per segment after the hole: the
    # sender's fast retransmit needs them (RFC 5681 4.2).
    assert len(acks) == 4
    size = len(segs[0].payload)
    assert all(ack.ack == S.add(a.iss, 1 + size) for ack in acks)
    assert all(ack.options.sack_blocks for ack in acks)
    b.on_segments([segs[1]], 0.01)  # the hole filled: acknowledged at once
    [ack] = wire.take(b)
    assert ack.ack == S.add(a.iss, 1 + 6 * size)


def test_nagle_holds_small_segments_until_acked() -> None:
    a, _b, wire = connected()
    a.app_send(b"a", 0.0)
    assert len(wire.take(a)) == 1
    a.app_send(b"b", 0.0)
    a.app_send(b"c", 0.0)
    assert wire.take(a) == []  # one small segment in flight: wait (RFC 896)
    a.nodelay = True
    a.flush(0.0)
    [seg] = wire.take(a)
    assert bytes(seg.payload) == b"bc"


def test_zero_window_persist_probes_then_resumes() -> None:
    cfg_b = TcpConfig(receive_buffer=4096, window_scaling=False)
    a = make(side="a")
    b = make(cfg_b, side="b", iss=777)
    wire = Wire(a, b)
    a.connect(0.0)
    wire.run(0.0)
    data = random.Random(9).randbytes(20000)
    a.app_send(data, 0.0)
    wire.run(0.0)
    wire.advance(0.05)  # b's delayed ACK closes the window
    wire.run(0.05)
    assert a.snd_wnd == 0
    now = 0.05
    probes = 0
    for _ in range(30):
        timer = a.get_timer()
        assert timer is not None
        now = timer
        wire.advance(now)
        wire.run(now)
        probes = a.zero_window_probes
        if probes >= 4:
            break
    assert probes >= 4
    # The probes back off exponentially (RFC 9293 3.8.6.1).
    assert now > 2.0
    got = bytearray()
    for _ in range(1000):
        chunk = b.app_receive(1 << 20, now)
        if chunk:
            got += chunk
        wire.run(now)
        if len(got) == len(data):
            break
        now += 0.05
        wire.advance(now)
        wire.run(now)
    assert bytes(got) == data
    assert b.counters["window_updates"] > 0


def test_receive_window_never_shrinks_and_sws_avoidance() -> None:
    a, b, wire = connected(TcpConfig(receive_buffer=65535 * 2))
    data = bytes(65535 * 2)
    a.app_send(data, 0.0)
    wire.run(0.0)
    right = b.rcv_adv
    assert len(b.rcv) == len(data)  # the buffer is full
    b.app_receive(100, 0.0)  # a little space: no window update (SWS avoidance)
    wire.run(0.0)
    assert b.rcv_adv == right
    b.app_receive(1 << 20, 0.0)  # lots of space: the right edge moves
    wire.run(0.0)
    assert S.gt(b.rcv_adv, right)


# ---------------------------------------------------------------- closing


def test_active_and_passive_close() -> None:
    a, b, wire = connected()
    a.app_close(0.0)
    assert a.state == FIN_WAIT_1
    wire.run(0.0)
    assert a.state == FIN_WAIT_2 and b.state == CLOSE_WAIT
    assert b.app_receive(100, 0.0) == b""
    b.app_close(0.1)
    assert b.state == LAST_ACK
    wire.run(0.1)
    assert b.state == CLOSED and b.error is None
    assert a.state == TIME_WAIT
    assert a.get_timer() == pytest.approx(0.1 + 2 * TcpConfig().msl)
    a.handle_timer(0.1 + 60)
    assert a.state == CLOSED


def test_simultaneous_close() -> None:
    a, b, wire = connected()
    a.app_close(0.0)
    b.app_close(0.0)
    fin_a, fin_b = wire.take(a), wire.take(b)
    for seg in fin_b:
        a.on_segment(seg, 0.01)
    for seg in fin_a:
        b.on_segment(seg, 0.01)
    assert a.state == CLOSING and b.state == CLOSING
    wire.run(0.02)
    assert a.state == TIME_WAIT and b.state == TIME_WAIT


def test_half_close_keeps_receiving() -> None:
    a, b, wire = connected()
    a.app_close(0.0)
    wire.run(0.0)
    assert b.state == CLOSE_WAIT
    b.app_send(b"still talking", 0.0)
    wire.run(0.0)
    assert a.app_receive(100, 0.0) == b"still talking"
    assert a.state == FIN_WAIT_2


def test_fin_retransmitted_when_lost() -> None:
    a, b, wire = connected()
    a.app_close(0.0)
    wire.run(0.0, drop={len(wire.log)})
    assert a.state == FIN_WAIT_1 and b.state == ESTABLISHED
    timer = a.get_timer()
    assert timer is not None
    wire.advance(timer)
    wire.run(timer)
    assert a.state == FIN_WAIT_2 and b.state == CLOSE_WAIT


def test_data_after_full_close_is_reset() -> None:
    a, b, wire = connected()
    b.app_close(0.0, full=True)
    wire.run(0.0)
    a.app_send(b"too late", 0.0)
    wire.run(0.0)
    assert b.state == CLOSED
    assert isinstance(a.error, ConnectionResetError)


def test_full_close_with_unread_data_resets() -> None:
    a, b, wire = connected()
    a.app_send(b"unread", 0.0)
    wire.run(0.0)
    b.app_close(0.1, full=True)  # RFC 2525 2.17: not a FIN, the data was never read
    [rst] = wire.take(b)
    assert rst.flags == wtcp.RST
    assert b.state == CLOSED and b.error is None


def test_full_close_after_reading_sends_fin() -> None:
    a, b, wire = connected()
    a.app_send(b"read", 0.0)
    wire.run(0.0)
    assert b.app_receive(100, 0.0) == b"read"
    b.app_close(0.1, full=True)
    assert b.state == FIN_WAIT_1 and b.receive_closed


def test_shutdown_resets_opening_and_unaccepted_connections() -> None:
    opening = make()
    opening.connect(0.0)
    opening.app_shutdown(1.0, accepted=True)
    assert opening.state == CLOSED and isinstance(opening.error, OSError)
    assert opening.error.errno == errno.ENETDOWN
    _a, b, wire = connected()
    b.app_shutdown(1.0, accepted=False)  # established, but its listener never took it
    assert [s.flags for s in wire.take(b)] == [wtcp.RST]
    assert b.state == CLOSED and b.error is not None and b.error.errno == errno.ENETDOWN


def test_shutdown_closes_established_connections_with_a_fin() -> None:
    a, b, wire = connected()
    a.app_send(b"unread", 0.0)
    wire.run(0.0)
    b.app_shutdown(1.0, accepted=True)  # unread data or not: a FIN
    assert b.state == FIN_WAIT_1 and b.error is None
    wire.run(1.0)
    assert b.state == FIN_WAIT_2 and a.state == CLOSE_WAIT
    b.app_shutdown(2.0, accepted=True)  # closing already: left alone
    assert b.state == FIN_WAIT_2 and b.out == []


# ---------------------------------------------------------------- RFC 5961


def test_rst_in_window_but_not_exact_gets_challenge_ack() -> None:
    a, _b, wire = connected()
    rst = wtcp.build(B_IP, A_IP, B_PORT, A_PORT, (a.rcv.rcv_nxt + 100) & 0xFFFFFFFF, 0, wtcp.RST, 0)
    a.on_segment(parse(rst, B_IP, A_IP), 0.1)
    assert a.state == ESTABLISHED
    [challenge] = wire.take(a)
    assert challenge.flags & wtcp.ACK and challenge.ack == a.rcv.rcv_nxt
    exact = wtcp.build(B_IP, A_IP, B_PORT, A_PORT, a.rcv.rcv_nxt, 0, wtcp.RST, 0)
    a.on_segment(parse(exact, B_IP, A_IP), 0.1)
    assert a.state == CLOSED and isinstance(a.error, ConnectionResetError)


def test_rst_outside_window_ignored() -> None:
    a, _b, wire = connected()
    rst = wtcp.build(B_IP, A_IP, B_PORT, A_PORT, (a.rcv.rcv_nxt - 10) & 0xFFFFFFFF, 0, wtcp.RST, 0)
    a.on_segment(parse(rst, B_IP, A_IP), 0.1)
    assert a.state == ESTABLISHED and wire.take(a) == []


def test_syn_in_established_gets_challenge_ack() -> None:
    a, _b, wire = connected()
    syn = wtcp.build(B_IP, A_IP, B_PORT, A_PORT, a.rcv.rcv_nxt, 0, wtcp.SYN, 1000)
    a.on_segment(parse(syn, B_IP, A_IP), 0.1)
    assert a.state == ESTABLISHED
    [challenge] = wire.take(a)
    assert challenge.flags == wtcp.ACK


def test_challenge_acks_are_rate_limited() -> None:
    allowed = iter([True, False, False])
    a = TcpConnection(
        TcpConfig(),
        (A_IP, A_PORT),
        (B_IP, B_PORT),
        Seq(1000),
        0,
        1460,
        0.0,
        challenge_allowed=lambda now: next(allowed),
    )
    b = make(side="b", iss=90000)
    wire = Wire(a, b)
    a.connect(0.0)
    wire.run(0.0)
    for _ in range(3):
        syn = wtcp.build(B_IP, A_IP, B_PORT, A_PORT, a.rcv.rcv_nxt, 0, wtcp.SYN, 1000)
        a.on_segment(parse(syn, B_IP, A_IP), 0.1)
    assert len(wire.take(a)) == 1
    assert a.counters["challenge_acks_suppressed"] == 2


def test_ack_of_unsent_data_is_dropped_with_an_ack() -> None:
    a, _b, _wire = connected()
    bogus = wtcp.build(
        B_IP,
        A_IP,
        B_PORT,
        A_PORT,
        a.rcv.rcv_nxt,
        (a.snd_max + 5000) & 0xFFFFFFFF,
        wtcp.ACK,
        1000,
        b"data?",
    )
    a.on_segment(parse(bogus, B_IP, A_IP), 0.1)
    assert a.counters["ack_too_new"] == 1
    assert a.app_receive(100, 0.1) is None  # its data was not accepted


def test_paws_rejects_old_timestamps() -> None:
    a, _b, _wire = connected()
    old_ts = (a.ts_recent - 1000) & 0xFFFFFFFF
    seg = wtcp.build(
        B_IP,
        A_IP,
        B_PORT,
        A_PORT,
        a.rcv.rcv_nxt,
        a.snd_nxt,
        wtcp.ACK,
        1000,
        b"replayed",
        timestamp=(old_ts, 0),
    )
    a.on_segment(parse(seg, B_IP, A_IP), 0.1)
    assert a.counters["paws_rejected"] == 1
    assert a.app_receive(100, 0.1) is None


# ---------------------------------------------------------------- keepalive, misc


def test_keepalive_probes_then_times_out() -> None:
    cfg = TcpConfig(keepalive=Keepalive(idle=10.0, interval=1.0, count=3))
    a = make(cfg, side="a")
    b = make(side="b", iss=3)
    wire = Wire(a, b)
    a.connect(0.0)
    wire.run(0.0)
    assert a.get_timer() == pytest.approx(10.0)
    a.handle_timer(10.0)
    [probe] = wire.take(a)
    assert S.diff(Seq(probe.seq), a.snd_una) == -1 and not probe.payload
    # The peer answers: the connection stays up.
    b.on_segment(probe, 10.0)
    wire.run(10.0)
    assert a.state == ESTABLISHED and a.keepalive_probes == 0
    # Now the peer vanishes: three probes a second apart, then ETIMEDOUT.
    now = 20.0
    for _ in range(5):
        a.handle_timer(now)
        wire.take(a)
        if a.state == CLOSED:
            break
        now += 1.0
    assert a.state == CLOSED and isinstance(a.error, TimeoutError)


def test_window_shift() -> None:
    assert window_shift(65535) == 0
    assert window_shift(65536) == 1
    assert window_shift(4 * 1024 * 1024) == 7
    assert window_shift(1 << 40) == 14


def test_fin_wait_states_reach_time_wait() -> None:
    a, b, wire = connected()
    a.app_close(0.0)
    [fin] = wire.take(a)
    assert a.state == FIN_WAIT_1
    b.on_segment(fin, 0.0)
    b.app_close(0.0)
    # b's ACK and FIN may travel together; a goes through CLOSING or FIN_WAIT_2.
    wire.run(0.0)
    assert a.state == TIME_WAIT and b.state == CLOSED
