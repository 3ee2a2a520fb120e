"""Counters of decisions and drops, keyed by a stable reason name."""

from __future__ import annotations


class Counters(dict[str, int]):
    """A dict of counts; ``stack.statistics()`` takes frozen copies of these."""

    def incr(self, reason: str, amount: int = 1) -> None:
        self[reason] = self.get(reason, 0) + amount
