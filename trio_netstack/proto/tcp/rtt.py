"""Round-trip time estimation and the retransmission timeout (RFC 6298).

The estimator is fed RTT samples in seconds and keeps SRTT, RTTVAR and the
current RTO. It never reads a clock: the connection measures samples with the
``now`` values it is given and asks for ``rto`` when it arms its timer.

Karn's algorithm (RFC 6298 3) is the caller's job: it must only pass
unambiguous samples, that is, never time a segment that was retransmitted
(unless the echo of a TCP timestamp, RFC 7323 4, says which transmission the ACK
is for). The estimator cannot tell a good sample from a bad one, except that
negative, NaN and infinite samples are ignored.

Constants are RFC 6298's (alpha = 1/8, beta = 1/4, K = 4). They are applied per
sample whatever the sampling rate; RFC 7323 Appendix G discusses scaling them
when there are many samples per RTT, which we, like Linux, do not do.

The bounds follow Linux rather than RFC 6298 2.4's 1 s floor (a SHOULD):

* ``minimum`` = 0.2 s is Linux's TCP_RTO_MIN. A 1 s floor makes a single tail
  loss on a LAN or metro path stall a flow for hundreds of RTTs. Linux hosts
  have run with 200 ms for decades without the congestion collapse the floor
  guards against; the residual risk, a spurious timeout when a lone segment
  waits for a peer's delayed-ACK timer, costs one retransmission and is undone
  by the connection's spurious-retransmission detection.
* ``maximum`` = 120 s is Linux's TCP_RTO_MAX; RFC 6298 2.5 allows any maximum of
  at least 60 s.
"""

from __future__ import annotations

import math

import attrs

ALPHA = 1.0 / 8.0  # RFC 6298 2.3
BETA = 1.0 / 4.0  # RFC 6298 2.3
K = 4  # RFC 6298 2.2


@attrs.frozen
class RtoConfig:
    initial: float = 1.0  # RFC 6298 2.1
    minimum: float = 0.2  # Linux's TCP_RTO_MIN (see the module docstring)
    maximum: float = 120.0  # Linux's TCP_RTO_MAX; RFC 6298 2.5 asks for >= 60 s
    clock_granularity: float = 0.001  # G in RFC 6298

    def __attrs_post_init__(self) -> None:
        values = (self.initial, self.minimum, self.maximum, self.clock_granularity)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("RTO configuration values must be finite")
        if not 0.0 < self.minimum <= self.maximum:
            raise ValueError("need 0 < minimum <= maximum")
        if self.initial <= 0.0:
            raise ValueError("initial RTO must be positive")
        if self.clock_granularity < 0.0:
            raise ValueError("clock granularity cannot be negative")


class RttEstimator:
    """SRTT, RTTVAR and the RTO with exponential backoff (RFC 6298 2 and 5)."""

    __slots__ = ("_base_rto", "backoff", "config", "rto", "rttvar", "samples", "srtt")

    def __init__(self, config: RtoConfig | None = None) -> None:
        self.config = config if config is not None else RtoConfig()
        self.srtt: float | None = None
        self.rttvar: float | None = None
        # RFC 6298 2.1: until a measurement is made, RTO = initial (1 s).
        self._base_rto = self._clamp(self.config.initial)
        self.rto = self._base_rto  # including backoff
        self.backoff = 0  # consecutive doublings applied by on_timeout()
        self.samples = 0

    def _clamp(self, rto: float) -> float:
        # RFC 6298 2.4 (lower bound, Linux's value) and 2.5 (upper bound).
        return min(max(rto, self.config.minimum), self.config.maximum)

    def sample(self, rtt: float) -> None:
        """Take one unambiguous RTT measurement (seconds); Karn's rule is the caller's."""
        if not (rtt >= 0.0) or math.isinf(rtt):  # also false for NaN
            return
        if self.srtt is None or self.rttvar is None:
            # RFC 6298 2.2: the first measurement.
            self.srtt = rtt
            self.rttvar = rtt / 2.0
        else:
            # RFC 6298 2.3: RTTVAR first, using the SRTT from before this sample.
            self.rttvar = (1.0 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1.0 - ALPHA) * self.srtt + ALPHA * rtt
        self.samples += 1
        # RFC 6298 2.2/2.3: RTO = SRTT + max(G, K*RTTVAR), then bounded (2.4, 2.5).
        self._base_rto = self._clamp(
            self.srtt + max(self.config.clock_granularity, K * self.rttvar)
        )
        # RFC 6298 5 (note after 5.7): a new measurement collapses any backoff.
        self.backoff = 0
        self.rto = self._base_rto

    def on_timeout(self) -> None:
        """The retransmission timer expired: back off (RFC 6298 5.5), at most to ``maximum``."""
        self.backoff += 1
        self.rto = min(self.rto * 2.0, self.config.maximum)  # RFC 6298 5.5 and 2.5

    def reset_backoff(self) -> None:
        """Undo the doublings (e.g. new data was acknowledged) and return to the computed RTO."""
        self.backoff = 0
        self.rto = self._base_rto
