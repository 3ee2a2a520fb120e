"""Pluggable congestion control: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438).

Theory of operation
-------------------
The connection owns loss detection and recovery; a controller owns two numbers,
``cwnd`` and ``ssthresh`` (integral bytes), and is told about events:

``on_ack(acked, rtt, now, in_flight)``
    New data was cumulatively acknowledged outside loss recovery. ``acked`` is
    the number of newly acknowledged bytes, ``rtt`` an unambiguous RTT sample
    from this ACK or None, ``in_flight`` the bytes that were outstanding *just
    before* this ACK (snd_max - snd_una before snd_una moved).
``on_loss(in_flight, now)``
    Fast retransmit: entering loss recovery, once per recovery episode.
    ``in_flight`` is FlightSize when the loss was detected.
``on_recovery_exit(now)``
    Recovery ended with a full acknowledgment.
``on_rto(in_flight, now)``
    The retransmission timer expired (``in_flight`` as at the expiry).
``on_idle_restart(idle, rto, now)``
    About to send after ``idle`` seconds with nothing sent; acts only when
    ``idle > rto`` (CUBIC also leaves shorter pauses out of its clock).
``undo(prior_cwnd, prior_ssthresh)``
    The last reduction was spurious (RFC 5682 F-RTO, RFC 2883 D-SACK, RFC 3522
    Eifel); the arguments are the values saved before the reduction.

Fast-recovery window inflation (RFC 5681 3.2 steps 3-4) is not done here: the
connection accounts for what is in the network itself (RFC 6675 pipe), so
``on_loss`` only sets ``ssthresh`` and ``cwnd``.

Rules chosen where the RFCs leave room
--------------------------------------
* Slow start counts bytes (RFC 3465 2.2-2.3) with L = 2*SMSS per ACK; when it
  reaches ``ssthresh`` the rest of the ACK goes to congestion avoidance.
  NewReno's congestion avoidance is RFC 3465 2.1 byte counting: one SMSS per
  ``cwnd`` bytes acknowledged, at most one SMSS per ACK.
* No growth unless the window was used (RFC 7661's idea, RFC 9438 5.8). An ACK
  is "cwnd-limited" when ``in_flight + mss > cwnd``: there was not room for one
  more full segment, so the window, not the application or the receive window,
  limited the sender. ACKs often arrive in batches with no chance to send in
  between; so the judgement is made afresh only when the sender transmitted
  since the previous ACK (``in_flight`` exceeds what the previous ACK left
  outstanding) and is otherwise carried over. ACKs for a window that was full
  when sent therefore all count, however they are batched.
* ``ssthresh`` on a timeout follows RFC 5681 3.1: equation 4 on the first
  timeout of a segment, held constant on its repeated timeouts (consecutive
  ``on_rto`` calls with no new ACK in between), and never raised by a timeout
  during fast recovery (RFC 5681 says "no more than" equation 4, and the
  congestion was already answered).
* ``on_recovery_exit`` deflates to ``ssthresh`` (RFC 6582 3.2 step 6, option 2)
  only if the episode began with ``on_loss`` and was neither overtaken by a
  timeout nor undone; otherwise it is a no-op, so it can never inflate a
  window that a timeout collapsed.
* Idle restart (RFC 5681 4.1): after more than one RTO without sending, ``cwnd``
  becomes min(cwnd, IW). Like RFC 2861 3 (and Linux), ``ssthresh`` first
  becomes max(ssthresh, 3/4 cwnd), so slow start climbs back quickly to where
  the flow was. Linux (net.ipv4.tcp_slow_start_after_idle=1, the default)
  restarts likewise, though it halves cwnd per idle RTO down to the restart
  window rather than dropping to it in one step.
* ``set_mss`` keeps ``cwnd`` in bytes (a smaller MSS sends more, smaller
  segments at the same byte rate; a larger MSS does not inflate the window),
  with floors of 1*MSS for cwnd and 2*MSS for ssthresh. The exception is an
  untouched initial window (no event yet, cwnd still IW): it is recomputed for
  the new MSS, so a controller made before the handshake settled the MSS
  starts with the right RFC 6928 window.
* ``undo`` restores max(cwnd, prior_cwnd) and max(ssthresh, prior_ssthresh)
  (it never lowers either) and ends the episode. CUBIC does so only while cwnd
  is below prior_cwnd, and then also restores W_max, K, the epoch, W_est and
  cwnd_prior as saved at the reduction (RFC 9438 4.9.2); otherwise it keeps its
  current state.

CUBIC specifics (RFC 9438): window arithmetic is done in bytes, the cubic
function in segments of the current MSS. The epoch (t = 0) is the first ACK of
a congestion avoidance stage, with K = cbrt((W_max - cwnd_epoch) / C); when
W_max is not above cwnd_epoch (after a timeout, 4.8, or when cwnd already
passed W_max) the stage starts on the plateau, K = 0 and W_max = cwnd_epoch.
The RTT look-ahead in ``target`` uses the minimum RTT seen rather than SRTT
(as Linux does): queueing the flow itself causes then cannot make CUBIC more
aggressive. Time in which the flow was not cwnd-limited, including intervals
that start with nothing in flight, is left out of t (RFC 9438 4.2, 5.8) by
moving the epoch forward. In the Reno-friendly region cwnd is raised to W_est
but never lowered by an ACK. HyStart++ is not implemented (RFC 9438 4.10
allows Reno slow start).
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar, Final

INFINITE_SSTHRESH: Final = 2**31  # RFC 5681 3.1: "arbitrarily high"
MAX_CWND: Final = 2**31
DEFAULT_CONGESTION_CONTROL: Final = "cubic"

SLOW_START_LIMIT: Final = 2  # RFC 3465 2.3: L = 2*SMSS bytes per ACK

BETA_CUBIC: Final = 0.7  # RFC 9438 4.1.1
C_CUBIC: Final = 0.4  # RFC 9438 4.1.1, segments / s**3
ALPHA_CUBIC: Final = 3.0 * (1.0 - BETA_CUBIC) / (1.0 + BETA_CUBIC)  # RFC 9438 4.3


def initial_window(mss: int) -> int:
    """RFC 6928 2: IW = min(10*MSS, max(2*MSS, 14600)) bytes."""
    return min(10 * mss, max(2 * mss, 14600))


def _times_beta_cubic(size: int) -> int:
    """size * beta_cubic in whole bytes, without float rounding (0.7 = 7/10)."""
    return max(size, 0) * 7 // 10


def _check_mss(mss: int) -> None:
    if mss <= 0:
        raise ValueError(f"MSS must be positive, not {mss}")


class CongestionControl(abc.ABC):
    """The interface the connection drives; see the module docstring."""

    __slots__ = (
        "_cwnd_limited",
        "_flight_after_ack",
        "_fresh",
        "_in_recovery",
        "_rto_backoff",
        "cwnd",
        "mss",
        "ssthresh",
    )

    name: ClassVar[str]

    def __init__(self, mss: int) -> None:
        _check_mss(mss)
        self.mss = mss
        self.cwnd = initial_window(mss)  # RFC 6928 2
        self.ssthresh = INFINITE_SSTHRESH  # RFC 5681 3.1
        # What the previous ACK left outstanding; None when unknown or stale.
        self._flight_after_ack: int | None = None
        self._cwnd_limited = False
        self._in_recovery = False  # on_loss called, recovery not exited
        self._rto_backoff = False  # on_rto called, no new ACK since
        self._fresh = True  # no ACK, loss, timeout or undo seen yet

    def __repr__(self) -> str:
        return f"<{type(self).__name__} cwnd={self.cwnd} ssthresh={self.ssthresh} mss={self.mss}>"

    @property
    def initial_window(self) -> int:
        return initial_window(self.mss)

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh  # RFC 5681 3.1

    # --- the events

    @abc.abstractmethod
    def on_ack(self, acked: int, rtt: float | None, now: float, in_flight: int) -> None:
        """New data acknowledged outside recovery: slow start or congestion avoidance."""

    @abc.abstractmethod
    def on_loss(self, in_flight: int, now: float) -> None:
        """Entering fast recovery: reduce ``ssthresh`` and set ``cwnd`` to it."""

    @abc.abstractmethod
    def on_rto(self, in_flight: int, now: float) -> None:
        """Retransmission timeout: reduce ``ssthresh``, collapse ``cwnd`` to one segment."""

    def on_recovery_exit(self, now: float) -> None:
        """Fast recovery ended: deflate to ``ssthresh`` (RFC 6582 3.2 step 6, option 2)."""
        if self._in_recovery:
            self.cwnd = max(self.ssthresh, 2 * self.mss)
            self._in_recovery = False
            self._forget_flight()

    def on_idle_restart(self, idle: float, rto: float, now: float) -> None:
        """Sending resumes after ``idle`` seconds: restart window (RFC 5681 4.1)."""
        if idle > rto:
            restart = min(self.initial_window, self.cwnd)  # RFC 5681 4.1: RW = min(IW, cwnd)
            if restart < self.cwnd:
                # RFC 2861 3: remember most of the old window in ssthresh.
                self.ssthresh = max(self.ssthresh, 3 * self.cwnd // 4)
                self.cwnd = restart
            self._forget_flight()

    def set_mss(self, mss: int) -> None:
        """The sender's MSS changed (path MTU): keep cwnd in bytes, re-apply the floors."""
        _check_mss(mss)
        if self._fresh and self.cwnd == self.initial_window:
            # Nothing has been sent under the initial window yet (typically the MSS
            # was just negotiated in the handshake): it follows the new SMSS
            # (RFC 6928 2, RFC 5681 3.1).
            self.cwnd = initial_window(mss)
        self.mss = mss
        self.cwnd = max(self.cwnd, mss)
        self.ssthresh = max(self.ssthresh, 2 * mss)
        self._flight_after_ack = None

    def undo(self, prior_cwnd: int, prior_ssthresh: int) -> None:
        """The last reduction was spurious (RFC 5682, RFC 2883, RFC 4015 response)."""
        self.cwnd = min(max(self.cwnd, prior_cwnd, self.mss), MAX_CWND)
        self.ssthresh = max(self.ssthresh, prior_ssthresh, 2 * self.mss)
        self._end_episode()

    # --- shared mechanics

    def _forget_flight(self) -> None:
        self._flight_after_ack = None
        self._fresh = False

    def _end_episode(self) -> None:
        self._in_recovery = False
        self._rto_backoff = False
        self._forget_flight()

    def _judge_cwnd_limited(self, acked: int, in_flight: int) -> bool:
        """Was the window what limited the sender?  (RFC 7661's idea; see the module docstring.)"""
        self._fresh = False
        in_flight = max(in_flight, 0)
        previous = self._flight_after_ack
        if previous is None or in_flight > previous:
            # The sender transmitted since the previous ACK: judge afresh.
            self._cwnd_limited = in_flight + self.mss > self.cwnd
        self._flight_after_ack = max(in_flight - acked, 0)
        return self._cwnd_limited

    def _slow_start(self, acked: int) -> int:
        """RFC 5681 3.1 with RFC 3465 2.2-2.3 byte counting; return the bytes left over."""
        increase = min(acked, SLOW_START_LIMIT * self.mss)
        room = self.ssthresh - self.cwnd
        if increase < room:
            self.cwnd = min(self.cwnd + increase, MAX_CWND)
            return 0
        # Reached ssthresh: the rest of this ACK counts towards congestion avoidance.
        self.cwnd = min(self.ssthresh, MAX_CWND)
        return acked - room

    def _reduce_for_loss(self, ssthresh: int) -> None:
        # RFC 6675 5 step 4.2 and RFC 5681 3.2 step 2: cwnd = ssthresh >= 2*SMSS
        # (no inflation: the connection does pipe accounting).
        self.ssthresh = max(ssthresh, 2 * self.mss)
        self.cwnd = self.ssthresh
        self._in_recovery = True
        self._rto_backoff = False
        self._forget_flight()

    def _reduce_for_rto(self, ssthresh: int) -> None:
        if not self._rto_backoff:
            # RFC 5681 3.1: first timeout of this segment; "no more than" the new value.
            new = max(ssthresh, 2 * self.mss)
            self.ssthresh = min(new, self.ssthresh) if self._in_recovery else new
        # else RFC 5681 3.1: a repeated timeout holds ssthresh constant.
        self.cwnd = self.mss  # RFC 5681 3.1: loss window LW = 1 SMSS
        self._in_recovery = False
        self._rto_backoff = True
        self._forget_flight()


class NewReno(CongestionControl):
    """RFC 5681 slow start and congestion avoidance, halving on loss (RFC 5681 eq. 4)."""

    __slots__ = ("_bytes_acked",)

    name: ClassVar[str] = "newreno"

    def __init__(self, mss: int) -> None:
        super().__init__(mss)
        self._bytes_acked = 0  # RFC 3465 2.1

    def on_ack(self, acked: int, rtt: float | None, now: float, in_flight: int) -> None:
        if acked <= 0:
            return
        self._rto_backoff = False
        if not self._judge_cwnd_limited(acked, in_flight):
            return
        if self.cwnd < self.ssthresh:
            acked = self._slow_start(acked)
            if acked <= 0:
                return
        # RFC 5681 3.1 congestion avoidance by RFC 3465 2.1 byte counting.
        self._bytes_acked += acked
        if self._bytes_acked >= self.cwnd:
            self._bytes_acked -= self.cwnd
            self.cwnd = min(self.cwnd + self.mss, MAX_CWND)
            # At most one SMSS per ACK; of a stretch ACK's excess, less than a
            # window is carried over.
            self._bytes_acked = min(self._bytes_acked, self.cwnd - 1)

    def on_loss(self, in_flight: int, now: float) -> None:
        self._bytes_acked = 0
        self._reduce_for_loss(max(in_flight, 0) // 2)  # RFC 5681 eq. 4

    def on_rto(self, in_flight: int, now: float) -> None:
        self._bytes_acked = 0
        self._reduce_for_rto(max(in_flight, 0) // 2)  # RFC 5681 3.1 eq. 4

    def on_idle_restart(self, idle: float, rto: float, now: float) -> None:
        super().on_idle_restart(idle, rto, now)
        if idle > rto:
            self._bytes_acked = 0


class Cubic(CongestionControl):
    """RFC 9438 CUBIC with fast convergence; Reno slow start (no HyStart++).

    State in bytes: ``w_max``, ``w_est``, ``cwnd_prior``; ``k`` in seconds;
    ``epoch_start`` is the ``now`` at which t = 0 (None outside congestion
    avoidance); ``min_rtt`` the smallest RTT sample seen (None before one).
    """

    __slots__ = (
        "_carry",
        "_carry_cwnd",
        "_last_ack_time",
        "_undo_state",
        "cwnd_prior",
        "epoch_start",
        "fast_convergence",
        "k",
        "min_rtt",
        "w_est",
        "w_max",
    )

    name: ClassVar[str] = "cubic"

    def __init__(self, mss: int, *, fast_convergence: bool = True) -> None:
        super().__init__(mss)
        # RFC 9438 4.7 says fast convergence SHOULD be on, except for a lone flow
        # on its path, which a sender cannot know.
        self.fast_convergence = fast_convergence
        self.w_max = 0.0  # 0: no congestion event yet (or reset by a timeout)
        self.k = 0.0
        self.w_est = 0.0
        self.cwnd_prior = 0
        self.epoch_start: float | None = None
        self.min_rtt: float | None = None
        self._last_ack_time: float | None = None
        # Fractional bytes of growth not yet in cwnd, valid while cwnd == _carry_cwnd.
        self._carry = 0.0
        self._carry_cwnd = self.cwnd
        self._undo_state: tuple[float, float, float | None, float, int] | None = None

    # --- the cubic function

    def _w_cubic(self, t: float) -> float:
        """RFC 9438 eq. 1, W_cubic(t) = C*(t-K)**3 + W_max, in bytes."""
        return C_CUBIC * self.mss * (t - self.k) ** 3 + self.w_max

    def _start_epoch(self, now: float) -> None:
        self.epoch_start = now  # RFC 9438 4.2: t_epoch
        cwnd_epoch = float(self.cwnd)
        if self.w_max <= cwnd_epoch:
            # RFC 9438 4.8 (after a timeout) and 4.10: K = 0, W_max = cwnd_epoch.
            self.w_max = cwnd_epoch
            self.k = 0.0
        else:
            # RFC 9438 eq. 2, K = cbrt((W_max - cwnd_epoch) / C), in segments.
            self.k = math.cbrt((self.w_max - cwnd_epoch) / (C_CUBIC * self.mss))
        self.w_est = cwnd_epoch  # RFC 9438 4.3

    def _exact_cwnd(self) -> float:
        if self._carry_cwnd == self.cwnd:
            return self.cwnd + self._carry
        return float(self.cwnd)  # cwnd was set elsewhere: the carry is stale

    def _set_exact_cwnd(self, value: float) -> None:
        whole = max(min(int(value), MAX_CWND), self.mss)
        self._carry = min(max(value - whole, 0.0), 1.0)
        self.cwnd = self._carry_cwnd = whole

    # --- events

    def on_ack(self, acked: int, rtt: float | None, now: float, in_flight: int) -> None:
        if rtt is not None and rtt >= 0.0 and math.isfinite(rtt):
            self.min_rtt = rtt if self.min_rtt is None else min(self.min_rtt, rtt)
        if acked <= 0:
            return
        self._rto_backoff = False
        resumed = self._flight_after_ack == 0  # the pipe had drained before this ACK
        limited = self._judge_cwnd_limited(acked, in_flight)
        last, self._last_ack_time = self._last_ack_time, now
        if self.epoch_start is not None and last is not None and (resumed or not limited):
            # RFC 9438 4.2 and 5.8: t must not include application-limited periods.
            self.epoch_start += max(now - last, 0.0)
        if not limited:
            return  # RFC 9438 5.8: no growth when application-limited
        if self.cwnd < self.ssthresh:
            self.epoch_start = None  # RFC 9438 4.10: slow start
            acked = self._slow_start(acked)
            if acked <= 0:
                return
        self._congestion_avoidance(acked, now)

    def _congestion_avoidance(self, acked: int, now: float) -> None:
        if self.epoch_start is None:
            self._start_epoch(now)
            assert self.epoch_start is not None
        cwnd = self._exact_cwnd()
        t = now - self.epoch_start
        # RFC 9438 4.3 eq. 4 with bytes acknowledged (ABC); alpha becomes 1 once
        # W_est reaches cwnd_prior.
        alpha = 1.0 if self.w_est >= self.cwnd_prior else ALPHA_CUBIC
        self.w_est += alpha * acked * self.mss / cwnd
        if self._w_cubic(t) < self.w_est:
            # RFC 9438 4.3: Reno-friendly region, cwnd = W_est (never lowered here).
            new = max(cwnd, self.w_est)
        else:
            # RFC 9438 4.4 (concave) and 4.5 (convex): target = W_cubic(t + RTT)
            # bounded to [cwnd, 1.5*cwnd] (4.2); grow (target - cwnd)/cwnd per
            # acknowledged segment, i.e. (target - cwnd)/cwnd * acked bytes.
            rtt = self.min_rtt if self.min_rtt is not None else 0.0
            target = min(max(self._w_cubic(t + rtt), cwnd), 1.5 * cwnd)
            new = min(cwnd + (target - cwnd) / cwnd * acked, target)
        self._set_exact_cwnd(new)

    def _save_undo(self) -> None:
        # RFC 9438 4.9.2: remember the state a spurious reduction would restore.
        self._undo_state = (self.w_max, self.k, self.epoch_start, self.w_est, self.cwnd_prior)

    def on_loss(self, in_flight: int, now: float) -> None:
        self._save_undo()
        cwnd = float(self.cwnd)
        if self.fast_convergence and cwnd < self.w_max:
            self.w_max = cwnd * (1.0 + BETA_CUBIC) / 2.0  # RFC 9438 4.7
        else:
            self.w_max = cwnd
        self.cwnd_prior = self.cwnd  # RFC 9438 4.6
        self.epoch_start = None
        # RFC 9438 4.6: ssthresh = flight_size * beta_cubic, cwnd = max(ssthresh, 2).
        self._reduce_for_loss(_times_beta_cubic(in_flight))

    def on_rto(self, in_flight: int, now: float) -> None:
        if not self._rto_backoff:
            if not self._in_recovery:  # in recovery, on_loss already saved the state
                self._save_undo()
            self.cwnd_prior = self.cwnd
            # RFC 9438 4.8: the next stage starts with K = 0 and W_max = cwnd_epoch.
            self.w_max = 0.0
        self.epoch_start = None
        # RFC 9438 4.8: Reno's timeout response with ssthresh from beta_cubic (4.6).
        self._reduce_for_rto(_times_beta_cubic(in_flight))

    def on_idle_restart(self, idle: float, rto: float, now: float) -> None:
        super().on_idle_restart(idle, rto, now)
        if self.epoch_start is not None and self._last_ack_time is not None:
            # RFC 9438 5.8: the idle time is not part of t.
            self.epoch_start += max(now - self._last_ack_time, 0.0)
            self._last_ack_time = now

    def set_mss(self, mss: int) -> None:
        super().set_mss(mss)
        self.epoch_start = None  # the curve is in segments: restart it with the new size

    def undo(self, prior_cwnd: int, prior_ssthresh: int) -> None:
        if self.cwnd >= prior_cwnd:
            # RFC 9438 4.9.2: already past the old window; keep the current state.
            self._end_episode()
            return
        if self._undo_state is not None:
            self.w_max, self.k, self.epoch_start, self.w_est, self.cwnd_prior = self._undo_state
            self._undo_state = None
        super().undo(prior_cwnd, prior_ssthresh)


_ALGORITHMS: Final[dict[str, type[NewReno] | type[Cubic]]] = {
    Cubic.name: Cubic,
    NewReno.name: NewReno,
}


def make_congestion_control(name: str, mss: int) -> CongestionControl:
    """A fresh controller by name: "cubic" (the default) or "newreno"."""
    try:
        cls = _ALGORITHMS[name]
    except KeyError:
        choices = ", ".join(sorted(_ALGORITHMS))
        raise ValueError(f"unknown congestion control {name!r} (choose from {choices})") from None
    return cls(mss)
