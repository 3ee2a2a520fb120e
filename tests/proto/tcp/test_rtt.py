"""RFC 6298 retransmission timer: the estimator against hand-computed values."""

from __future__ import annotations

import math

import pytest

from trio_netstack.proto.tcp.rtt import RtoConfig, RttEstimator


def test_initial_state() -> None:
    est = RttEstimator()
    assert est.srtt is None
    assert est.rttvar is None
    assert est.rto == 1.0  # RFC 6298 2.1
    assert est.backoff == 0
    assert est.samples == 0


def test_first_and_second_sample() -> None:
    est = RttEstimator()
    est.sample(0.1)
    # RFC 6298 2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4*RTTVAR)
    assert est.srtt == pytest.approx(0.1)
    assert est.rttvar == pytest.approx(0.05)
    assert est.rto == pytest.approx(0.3)
    est.sample(0.2)
    # RFC 6298 2.3: RTTVAR = 3/4*0.05 + 1/4*|0.1 - 0.2|; SRTT = 7/8*0.1 + 1/8*0.2
    assert est.rttvar == pytest.approx(0.0625)
    assert est.srtt == pytest.approx(0.1125)
    assert est.rto == pytest.approx(0.1125 + 4 * 0.0625)
    assert est.samples == 2


def test_sequence_of_samples_follows_the_recurrence() -> None:
    est = RttEstimator()
    srtt = rttvar = 0.0
    for i, r in enumerate([0.3, 0.25, 0.5, 0.31, 0.29, 1.2, 0.3]):
        est.sample(r)
        if i == 0:
            srtt, rttvar = r, r / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
            srtt = 0.875 * srtt + 0.125 * r
        assert est.srtt == pytest.approx(srtt)
        assert est.rttvar == pytest.approx(rttvar)
        assert est.rto == pytest.approx(min(max(srtt + max(0.001, 4 * rttvar), 0.2), 120.0))


def test_minimum_and_granularity() -> None:
    est = RttEstimator()
    est.sample(0.01)  # 0.01 + 4*0.005 = 0.03, below Linux's 200 ms floor
    assert est.rto == 0.2
    # G dominates when the variance is below it.
    est = RttEstimator(RtoConfig(minimum=0.001, clock_granularity=0.5))
    est.sample(0.0)
    assert est.srtt == 0.0
    assert est.rto == pytest.approx(0.5)
    est = RttEstimator(RtoConfig(minimum=0.001))
    for _ in range(200):
        est.sample(0.05)  # RTTVAR decays towards 0
    assert est.rto == pytest.approx(0.05 + 0.001, abs=1e-6)


def test_maximum() -> None:
    est = RttEstimator()
    est.sample(100.0)  # 100 + 4*50
    assert est.rto == 120.0
    est = RttEstimator(RtoConfig(initial=500.0))
    assert est.rto == 120.0  # even the initial value is bounded


def test_backoff_doubles_up_to_the_maximum() -> None:
    est = RttEstimator()
    seen = []
    for _ in range(10):
        est.on_timeout()
        seen.append(est.rto)
    # RFC 6298 5.5: 1, 2, 4, 8, ... capped at 120 s (2.5)
    assert seen == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 120.0, 120.0, 120.0, 120.0]
    assert est.backoff == 10


def test_backoff_from_a_measured_rto() -> None:
    est = RttEstimator()
    est.sample(0.1)
    base = est.rto
    for n in range(1, 6):
        est.on_timeout()
        assert est.rto == pytest.approx(base * 2**n)
        assert est.backoff == n
    est.reset_backoff()
    assert est.backoff == 0
    assert est.rto == pytest.approx(base)


def test_new_sample_collapses_backoff() -> None:
    est = RttEstimator()
    est.sample(0.1)
    est.on_timeout()
    est.on_timeout()
    assert est.backoff == 2
    est.sample(0.1)  # RFC 6298 5: the new RTO replaces the backed-off one
    assert est.backoff == 0
    assert est.rto == pytest.approx(est.srtt + 4 * est.rttvar)  # type: ignore[operator]
    assert est.rto < 0.5


def test_minimum_is_backed_off_too() -> None:
    est = RttEstimator()
    est.sample(0.001)
    assert est.rto == 0.2
    est.on_timeout()
    assert est.rto == pytest.approx(0.4)


@pytest.mark.parametrize("bad", [-0.001, -1.0, math.nan, math.inf, -math.inf])
def test_bad_samples_are_ignored(bad: float) -> None:
    est = RttEstimator()
    est.sample(bad)
    assert est.samples == 0
    assert est.srtt is None
    assert est.rto == 1.0
    est.sample(0.1)
    est.on_timeout()
    est.sample(bad)
    assert est.samples == 1
    assert est.srtt == pytest.approx(0.1)
    assert est.backoff == 1  # an ignored sample does not collapse the backoff


@pytest.mark.parametrize(
    "kwargs",
    [
        {"minimum": 0.0},
        {"minimum": 2.0, "maximum": 1.0},
        {"initial": 0.0},
        {"clock_granularity": -0.1},
        {"maximum": math.inf},
        {"initial": math.nan},
    ],
)
def test_config_is_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RtoConfig(**kwargs)
