"""Congestion control: NewReno (RFC 5681/6582/3465) and CUBIC (RFC 9438), with explicit time."""

from __future__ import annotations

import math

import pytest

from trio_netstack.proto.tcp.congestion import (
    INFINITE_SSTHRESH,
    CongestionControl,
    Cubic,
    NewReno,
    make_congestion_control,
)

MSS = 1460
ALGORITHMS = [NewReno, Cubic]
C = 0.4
BETA = 0.7
ALPHA = 3 * (1 - BETA) / (1 + BETA)


def controller(
    cls: type[NewReno] | type[Cubic], cwnd: int, ssthresh: int, mss: int = MSS
) -> CongestionControl:
    """A controller with cwnd and ssthresh given in segments."""
    cc = cls(mss)
    cc.cwnd = cwnd * mss
    cc.ssthresh = ssthresh * mss
    return cc


def ack_round(cc: CongestionControl, now: float, rtt: float, per_ack: int = 0) -> float:
    """One RTT of ACKs for a full window, evenly spaced, the sender refilling the
    window after each ACK (an ACK clock). Returns the time at the end of the round."""
    per_ack = per_ack or cc.mss
    n = max(cc.cwnd // per_ack, 1)
    for i in range(n):
        cc.on_ack(per_ack, rtt, now + (i + 1) * rtt / n, cc.cwnd)
    return now + rtt


def segments(cc: CongestionControl) -> float:
    return cc.cwnd / cc.mss


# --- common behaviour


@pytest.mark.parametrize("cls", ALGORITHMS)
@pytest.mark.parametrize(("mss", "iw"), [(1460, 14600), (536, 5360), (1000, 10000), (9000, 18000)])
def test_initial_window(cls: type[NewReno] | type[Cubic], mss: int, iw: int) -> None:
    cc = cls(mss)  # RFC 6928: min(10*MSS, max(2*MSS, 14600))
    assert cc.cwnd == iw == cc.initial_window
    assert cc.ssthresh == INFINITE_SSTHRESH
    assert cc.in_slow_start


@pytest.mark.parametrize("cls", ALGORITHMS)
@pytest.mark.parametrize("per_ack_segments", [1, 2])
def test_slow_start_doubles_per_rtt(
    cls: type[NewReno] | type[Cubic], per_ack_segments: int
) -> None:
    cc = cls(MSS)
    assert cc.cwnd == 10 * MSS
    now = 0.0
    for expected in (20, 40, 80, 160):
        now = ack_round(cc, now, 0.05, per_ack_segments * MSS)
        assert cc.cwnd == expected * MSS


@pytest.mark.parametrize("cls", ALGORITHMS)
def test_slow_start_byte_counting_limit(cls: type[NewReno] | type[Cubic]) -> None:
    cc = cls(MSS)
    # RFC 3465 2.3: a stretch ACK for 4 segments grows cwnd by L = 2 segments only.
    cc.on_ack(4 * MSS, None, 0.1, 10 * MSS)
    assert cc.cwnd == 12 * MSS
    # A small ACK grows by what it acknowledges.
    cc.on_ack(100, None, 0.1, 12 * MSS)
    assert cc.cwnd == 12 * MSS + 100


@pytest.mark.parametrize("cls", ALGORITHMS)
def test_slow_start_stops_at_ssthresh(cls: type[NewReno] | type[Cubic]) -> None:
    cc = controller(cls, cwnd=14, ssthresh=15)
    cc.on_ack(2 * MSS, 0.1, 1.0, 14 * MSS)
    # Not 16: the rest of the ACK is congestion avoidance (at most MSS*MSS/cwnd).
    assert 15 * MSS <= cc.cwnd <= 15 * MSS + MSS // 15
    assert not cc.in_slow_start


def test_newreno_congestion_avoidance_adds_one_segment_per_window() -> None:
    cc = controller(NewReno, cwnd=20, ssthresh=10)
    now = ack_round(cc, 0.0, 0.1)
    assert cc.cwnd == 21 * MSS  # RFC 5681 3.1 / RFC 3465 2.1
    for _ in range(9):
        now = ack_round(cc, now, 0.1)
    assert 29 * MSS <= cc.cwnd <= 30 * MSS
    # With delayed ACKs (one per two segments) the growth is the same per RTT.
    cc = controller(NewReno, cwnd=20, ssthresh=10)
    now = 0.0
    for _ in range(10):
        now = ack_round(cc, now, 0.1, 2 * MSS)
    assert 29 * MSS <= cc.cwnd <= 30 * MSS


def test_newreno_stretch_ack_grows_at_most_one_segment() -> None:
    cc = controller(NewReno, cwnd=20, ssthresh=10)
    cc.on_ack(100 * MSS, None, 1.0, 20 * MSS)  # five windows acknowledged at once
    assert cc.cwnd == 21 * MSS
    # Less than a window of the excess is carried over: it yields at most one more
    # segment, not four.
    for i in range(10):
        cc.on_ack(MSS, None, 1.1 + i / 100, 21 * MSS)
    assert cc.cwnd == 22 * MSS


def test_newreno_loss() -> None:
    cc = controller(NewReno, cwnd=40, ssthresh=30)
    cc.on_loss(40 * MSS, 1.0)
    assert cc.ssthresh == 20 * MSS  # RFC 5681 eq. 4: max(FlightSize/2, 2*SMSS)
    assert cc.cwnd == 20 * MSS  # no inflation
    cc.on_recovery_exit(1.5)
    cc.on_loss(3 * MSS, 2.0)
    assert cc.ssthresh == 2 * MSS
    assert cc.cwnd == 2 * MSS


def test_newreno_rto() -> None:
    cc = controller(NewReno, cwnd=40, ssthresh=INFINITE_SSTHRESH // MSS)
    cc.on_rto(40 * MSS, 1.0)
    assert cc.ssthresh == 20 * MSS  # RFC 5681 3.1 eq. 4
    assert cc.cwnd == MSS  # loss window
    # RFC 5681 3.1: a repeated timeout of the same segment holds ssthresh constant.
    cc.on_rto(40 * MSS, 2.0)
    assert cc.ssthresh == 20 * MSS
    assert cc.cwnd == MSS
    # Slow start from one segment, then a new timeout computes ssthresh again.
    cc.on_ack(MSS, 0.1, 3.0, 40 * MSS)
    assert cc.cwnd == 2 * MSS
    cc.on_rto(10 * MSS, 4.0)
    assert cc.ssthresh == 5 * MSS


def test_cubic_loss_and_rto() -> None:
    cc = controller(Cubic, cwnd=100, ssthresh=50)
    assert isinstance(cc, Cubic)
    cc.on_loss(100 * MSS, 1.0)
    assert cc.ssthresh == 70 * MSS  # RFC 9438 4.6: flight_size * 0.7
    assert cc.cwnd == 70 * MSS
    assert cc.w_max == 100 * MSS
    assert cc.cwnd_prior == 100 * MSS
    cc.on_recovery_exit(1.5)
    cc.on_rto(60 * MSS, 2.0)
    assert cc.ssthresh == 42 * MSS  # RFC 9438 4.8: beta_cubic as in 4.6
    assert cc.cwnd == MSS
    cc.on_rto(MSS, 3.0)
    assert cc.ssthresh == 42 * MSS  # held on the repeated timeout
    # Tiny flights still leave ssthresh at two segments.
    cc = controller(Cubic, cwnd=10, ssthresh=5)
    cc.on_loss(2 * MSS, 1.0)
    assert cc.ssthresh == cc.cwnd == 2 * MSS


@pytest.mark.parametrize("cls", ALGORITHMS)
def test_rto_during_recovery_does_not_raise_ssthresh(cls: type[NewReno] | type[Cubic]) -> None:
    cc = controller(cls, cwnd=40, ssthresh=30)
    cc.on_loss(40 * MSS, 1.0)
    reduced = cc.ssthresh
    cc.on_rto(40 * MSS, 2.0)  # eq. 4 again would give the same or more: keep the lower
    assert cc.ssthresh == reduced
    assert cc.cwnd == MSS
    cc.on_recovery_exit(2.5)  # the timeout ended the episode: no deflation to ssthresh
    assert cc.cwnd == MSS


@pytest.mark.parametrize("cls", ALGORITHMS)
def test_recovery_exit_deflates(cls: type[NewReno] | type[Cubic]) -> None:
    cc = controller(cls, cwnd=40, ssthresh=30)
    cc.on_loss(40 * MSS, 1.0)
    ssthresh = cc.ssthresh
    cc.cwnd = 45 * MSS  # whatever the connection did during recovery
    cc.on_recovery_exit(1.5)
    assert cc.cwnd == ssthresh  # RFC 6582 3.2 step 6
    cc.cwnd = 33 * MSS
    cc.on_recovery_exit(2.0)  # not in recovery any more: no-op
    assert cc.cwnd == 33 * MSS


@pytest.mark.parametrize("cls", ALGORITHMS)
def test_idle_restart(cls: type[NewReno] | type[Cubic]) -> None:
    cc = controller(cls, cwnd=40, ssthresh=20)
    cc.on_idle_restart(0.5, 1.0, 10.0)  # not idle for an RTO: unchanged
    assert cc.cwnd == 40 * MSS
    cc.on_idle_restart(1.5, 1.0, 12.0)
    assert cc.cwnd == 10 * MSS  # RFC 5681 4.1: RW = min(IW, cwnd)
    assert cc.ssthresh == 30 * MSS  # RFC 2861 3: max(ssthresh, 3/4 cwnd)
    cc = controller(cls, cwnd=4, ssthresh=3)
    cc.on_idle_restart(5.0, 1.0, 12.0)
    assert cc.cwnd == 4 * MSS  # already below the restart window
    assert cc.ssthresh == 3 * MSS


@pytest.mark.parametrize("cls", ALGORITHMS)
@pytest.mark.parametrize("ssthresh", [5, 100])  # congestion avoidance, slow start
def test_application_limited_acks_do_not_grow(
    cls: type[NewReno] | type[Cubic], ssthresh: int
) -> None:
    cc = controller(cls, cwnd=20, ssthresh=ssthresh)
    now = 0.0
    for _ in range(200):
        # The application keeps only 5 segments in flight: each ACK is followed by
        # one new segment.
        now += 0.01
        cc.on_ack(MSS, 0.05, now, 5 * MSS)
    assert cc.cwnd == 20 * MSS
    # Even almost full is not full: one more segment would still have fitted.
    cc.on_ack(MSS, 0.05, now + 0.01, 19 * MSS)
    assert cc.cwnd == 20 * MSS
    # Less than one segment of room left: cwnd-limited.
    for i in range(20):
        cc.on_ack(MSS, 0.05, now + 0.02 + i / 100, 19 * MSS + 1)
    assert cc.cwnd > 20 * MSS


@pytest.mark.parametrize("cls", ALGORITHMS)
def test_batched_acks_for_a_full_window_grow(cls: type[NewReno] | type[Cubic]) -> None:
    cc = cls(MSS)
    flight = 10 * MSS
    # Five delayed ACKs handled back to back: no chance to send in between, so
    # the flight shrinks, but the window they acknowledge was full when sent.
    for _ in range(5):
        cc.on_ack(2 * MSS, 0.05, 1.0, flight)
        flight -= 2 * MSS
    assert cc.cwnd == 20 * MSS
    # The sender now fills only part of the larger window: no more growth.
    cc.on_ack(2 * MSS, 0.05, 1.1, 6 * MSS)
    cc.on_ack(2 * MSS, 0.05, 1.1, 4 * MSS)
    assert cc.cwnd == 20 * MSS


@pytest.mark.parametrize("cls", ALGORITHMS)
def test_set_mss(cls: type[NewReno] | type[Cubic]) -> None:
    cc = controller(cls, cwnd=20, ssthresh=10)
    cc.set_mss(1200)
    assert cc.mss == 1200
    assert cc.cwnd == 20 * MSS  # kept in bytes
    assert cc.initial_window == 12000
    cc.on_rto(20 * MSS, 1.0)
    assert cc.cwnd == 1200
    cc.cwnd = 500
    cc.ssthresh = 600
    cc.set_mss(1460)
    assert cc.cwnd == 1460  # never below one segment
    assert cc.ssthresh == 2 * 1460
    with pytest.raises(ValueError):
        cc.set_mss(0)


@pytest.mark.parametrize("cls", ALGORITHMS)
def test_set_mss_before_any_event_recomputes_the_initial_window(
    cls: type[NewReno] | type[Cubic],
) -> None:
    cc = cls(536)  # made before the handshake, with the default MSS
    assert cc.cwnd == 5360
    cc.set_mss(1448)  # the negotiated MSS
    assert cc.cwnd == 14480
    cc.set_mss(1460)
    assert cc.cwnd == 14600
    cc.on_ack(1460, 0.05, 1.0, 14600)
    cc.set_mss(1200)  # later (path MTU): bytes are kept
    assert cc.cwnd == 16060
    # A window the connection set itself (RFC 5681 3.1: one segment after a lost
    # SYN) is not overridden either.
    cc = cls(536)
    cc.cwnd = 536
    cc.set_mss(1460)
    assert cc.cwnd == 1460


def test_newreno_undo() -> None:
    cc = controller(NewReno, cwnd=40, ssthresh=30)
    prior = (cc.cwnd, cc.ssthresh)
    cc.on_loss(40 * MSS, 1.0)
    cc.undo(*prior)  # RFC 2883 D-SACK said the retransmission was spurious
    assert (cc.cwnd, cc.ssthresh) == prior
    cc.on_recovery_exit(1.5)  # the episode was undone: nothing to deflate
    assert cc.cwnd == 40 * MSS
    cc.on_rto(40 * MSS, 2.0)
    cc.undo(*prior)  # RFC 5682 F-RTO
    assert (cc.cwnd, cc.ssthresh) == prior
    # A stale undo never shrinks the window.
    cc.cwnd = 50 * MSS
    cc.undo(*prior)
    assert cc.cwnd == 50 * MSS


def test_cubic_undo_restores_its_state() -> None:
    cc = Cubic(1000)
    cc.cwnd, cc.ssthresh = 100_000, 50_000
    now = ack_round(cc, 0.0, 0.1)  # start an epoch
    state = (cc.w_max, cc.k, cc.epoch_start, cc.w_est, cc.cwnd_prior)
    prior = (cc.cwnd, cc.ssthresh)
    cc.on_loss(cc.cwnd, now)
    assert cc.epoch_start is None
    reduced_ssthresh = cc.ssthresh
    cc.undo(*prior)  # RFC 9438 4.9.2
    assert cc.cwnd == prior[0]
    assert cc.ssthresh == max(prior[1], reduced_ssthresh)  # undo never lowers ssthresh
    assert not cc.in_slow_start
    assert (cc.w_max, cc.k, cc.epoch_start, cc.w_est, cc.cwnd_prior) == state
    # When cwnd already regrew past the old value, the current state is kept.
    cc.on_loss(cc.cwnd, now)
    cc.cwnd = prior[0] + 5000
    w_max = cc.w_max
    cc.undo(*prior)
    assert cc.cwnd == prior[0] + 5000
    assert cc.w_max == w_max
    assert cc.ssthresh == prior[0] * 7 // 10  # the reduced value is kept


def test_make_congestion_control() -> None:
    assert isinstance(make_congestion_control("cubic", 1460), Cubic)
    cc = make_congestion_control("newreno", 536)
    assert isinstance(cc, NewReno)
    assert cc.name == "newreno"
    assert cc.mss == 536
    assert Cubic.name == "cubic"
    with pytest.raises(ValueError, match="bbr"):
        make_congestion_control("bbr", 1460)
    with pytest.raises(ValueError):
        make_congestion_control("cubic", 0)


# --- CUBIC against RFC 9438


def w_cubic(t: float, k: float, w_max: float) -> float:
    """RFC 9438 eq. 1, in segments."""
    return C * (t - k) ** 3 + w_max


def cubic_after_loss(w_max: int, mss: int = 1000, fast_convergence: bool = True) -> Cubic:
    """A CUBIC sender that lost a segment at cwnd = w_max segments and recovered."""
    cc = Cubic(mss, fast_convergence=fast_convergence)
    cc.cwnd, cc.ssthresh = w_max * mss, w_max * mss // 2
    cc.on_loss(w_max * mss, 0.0)
    cc.on_recovery_exit(0.5)
    return cc


def test_cubic_follows_the_cubic_function() -> None:
    mss, rtt, w_max = 1000, 0.1, 1000
    cc = cubic_after_loss(w_max, mss)
    assert cc.cwnd == 700 * mss
    k = math.cbrt(w_max * (1 - BETA) / C)  # RFC 9438 eq. 2 with cwnd_epoch = beta*W_max
    now, first_ack = 1.0, 1.0 + rtt / (cc.cwnd // (2 * mss))
    trace: list[tuple[float, float]] = []
    for _ in range(150):  # 15 s: concave, plateau and convex regions
        now = ack_round(cc, now, rtt, 2 * mss)  # delayed ACKs
        t = now - first_ack
        trace.append((t, segments(cc)))
        assert segments(cc) == pytest.approx(w_cubic(t, k, w_max), abs=0.5)
    assert cc.epoch_start == pytest.approx(first_ack)
    assert cc.k == pytest.approx(k)
    assert cc.min_rtt == rtt

    def growth(t0: float, t1: float) -> float:
        inside = [w for t, w in trace if t0 <= t <= t1]
        return inside[-1] - inside[0]

    # Concave: fast at first, slowing down towards W_max.
    assert growth(0, 2) > growth(2, 4) > growth(4, 6) > growth(6, 8) > 0
    # Plateau: within a second either side of K the window barely moves, and it
    # stays next to W_max.
    assert growth(k - 1, k + 1) < 1.0
    assert all(abs(w - w_max) < 1.0 for t, w in trace if k - 1 <= t <= k + 1)
    # Convex: the growth accelerates again.
    assert 0 < growth(k + 1, k + 3) < growth(k + 3, k + 5)
    assert trace[-1][1] > w_max + 30


def test_cubic_fast_convergence() -> None:
    mss, rtt = 1000, 0.1
    cc = cubic_after_loss(100, mss)
    now = 1.0
    while segments(cc) < 90:  # regrow, but not back to the old W_max
        now = ack_round(cc, now, rtt)
    cwnd = segments(cc)
    cc.on_loss(cc.cwnd, now)
    # RFC 9438 4.7: a loss below W_max lowers W_max to cwnd*(1+beta)/2.
    assert cc.w_max / mss == pytest.approx(cwnd * (1 + BETA) / 2)
    assert cc.w_max / mss < cwnd
    cc.on_recovery_exit(now + 0.5)
    now = ack_round(cc, now + 1.0, rtt)
    cwnd_epoch = int(cwnd * BETA)
    assert cc.k == pytest.approx(math.cbrt((cwnd * (1 + BETA) / 2 - cwnd_epoch) / C), rel=1e-3)
    # Without fast convergence W_max is just the cwnd at the loss.
    cc = cubic_after_loss(100, mss, fast_convergence=False)
    now = 1.0
    while segments(cc) < 90:
        now = ack_round(cc, now, rtt)
    cwnd = segments(cc)
    cc.on_loss(cc.cwnd, now)
    assert cc.w_max / mss == pytest.approx(cwnd)


def test_cubic_reno_friendly_region_with_tiny_rtt() -> None:
    mss, rtt, w_max = 1000, 0.001, 100
    cc = cubic_after_loss(w_max, mss)
    k = math.cbrt(w_max * (1 - BETA) / C)
    now, first_ack = 1.0, 1.0 + rtt / 70
    for rounds in range(1, 51):
        now = ack_round(cc, now, rtt)
        t = now - first_ack
        # RFC 9438 4.3: W_est grows alpha_cubic segments per RTT and dominates the
        # cubic curve, which has hardly left cwnd_epoch after 50 ms.
        assert segments(cc) == pytest.approx(70 + ALPHA * rounds, abs=1.0)
        assert segments(cc) > w_cubic(t, k, w_max) + 0.3 * rounds
    # Once W_est reaches cwnd_prior, alpha becomes 1: Reno's one segment per RTT.
    while segments(cc) < 101:
        now = ack_round(cc, now, rtt)
    start = segments(cc)
    for _ in range(20):
        now = ack_round(cc, now, rtt)
    assert segments(cc) - start == pytest.approx(20, abs=1.0)
    assert segments(cc) > w_cubic(now - first_ack, k, w_max) + 15


def epoch_of(cc: Cubic) -> float:
    assert cc.epoch_start is not None
    return cc.epoch_start


def test_cubic_application_limited_time_is_not_counted() -> None:
    mss, rtt = 1000, 0.1
    cc = cubic_after_loss(1000, mss)
    now = ack_round(cc, 1.0, rtt, 2 * mss)
    # The application slows down: after the last full window, the sender keeps
    # only half a window in flight.
    now += rtt
    cc.on_ack(2 * mss, rtt, now, cc.cwnd // 2)
    cwnd, epoch = cc.cwnd, epoch_of(cc)
    # Ten seconds of ACKs for a half-empty window: no growth, and t stands still
    # (RFC 9438 5.8).
    for _ in range(100):
        now += rtt
        cc.on_ack(2 * mss, rtt, now, cwnd // 2)
    assert cc.cwnd == cwnd
    assert epoch_of(cc) == pytest.approx(epoch + 10.0)
    # A pause with nothing in flight is not counted either.
    cc.on_ack(2 * mss, rtt, now + 0.01, cwnd)  # the window is full again
    cc.on_ack(cwnd, rtt, now + 0.02, cwnd - 2 * mss)  # everything acknowledged
    epoch = epoch_of(cc)
    cc.on_ack(2 * mss, rtt, now + 5.0, cwnd)  # the next ACK comes after a 5 s pause
    assert epoch_of(cc) == pytest.approx(epoch + 4.98)
    # So is an idle period the connection reports.
    epoch = epoch_of(cc)
    cc.on_idle_restart(0.5, 1.0, now + 5.5)
    assert epoch_of(cc) == pytest.approx(epoch + 0.5)


def test_cubic_after_rto_starts_on_the_plateau() -> None:
    mss, rtt = 1000, 0.1
    cc = cubic_after_loss(100, mss)
    cc.on_rto(70 * mss, 2.0)
    assert cc.cwnd == mss
    assert cc.ssthresh == 49 * mss
    now = 3.0
    while cc.in_slow_start:
        now += 0.01
        cc.on_ack(mss, rtt, now, cc.cwnd)
    assert cc.cwnd == 49 * mss
    assert cc.epoch_start is None
    now += 0.01
    cc.on_ack(mss, rtt, now, cc.cwnd)
    # RFC 9438 4.8: K = 0 and W_max = cwnd at the start of congestion avoidance,
    # so the window grows convexly from there.
    assert cc.epoch_start == now
    assert cc.k == 0.0
    assert cc.w_max == 49 * mss
    assert cc.w_est > 49 * mss


def test_cubic_tracks_the_minimum_rtt() -> None:
    cc = Cubic(MSS)
    assert cc.min_rtt is None
    for sample in (0.2, 0.05, None, 0.3, -1.0, math.nan):
        cc.on_ack(MSS, sample, 1.0, cc.cwnd)
    assert cc.min_rtt == 0.05
