"""The ephemeral port picker UDP and TCP share (RFC 6056 3.3.1)."""

from __future__ import annotations

from trio_netstack.proto.ports import EPHEMERAL_HIGH, EPHEMERAL_LOW, pick_ephemeral


def test_random_start_then_the_next_free_port_wrapping_around() -> None:
    draws: list[tuple[int, int]] = []

    def randrange(low: int, high: int) -> int:
        draws.append((low, high))
        return high - 1  # start at the last port of the range

    assert pick_ephemeral(randrange, lambda port: True) == EPHEMERAL_HIGH
    taken = {EPHEMERAL_HIGH, EPHEMERAL_LOW}
    assert pick_ephemeral(randrange, lambda port: port not in taken) == EPHEMERAL_LOW + 1
    assert draws == [(0, EPHEMERAL_HIGH - EPHEMERAL_LOW + 1)] * 2  # one draw per pick


def test_none_when_every_port_is_taken() -> None:
    assert pick_ephemeral(lambda low, high: 7, lambda port: False) is None
