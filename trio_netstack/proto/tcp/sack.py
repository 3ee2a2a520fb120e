"""The sender's SACK scoreboard (RFC 2018, RFC 6675).

It records which ranges above ``snd_una`` the receiver reported holding, so
that loss recovery resends only the holes (RFC 6675 NextSeg) and counts what is
still in the network (RFC 6675 "pipe"). Blocks at or below ``snd_una`` are
duplicate-SACK reports (RFC 2883) and are only counted. The number of ranges is
bounded; a hostile receiver cannot make it grow without limit.
"""

from __future__ import annotations

from . import seq as S
from .seq import Seq

MAX_RANGES = 64


class Scoreboard:
    # Slots: one per connection (docs/performance.md).
    __slots__ = (
        "dsacks",
        "last_dsacks",
        "newly",
        "ranges",
    )

    def __init__(self) -> None:
        self.ranges: list[tuple[Seq, Seq]] = []  # disjoint, ascending from snd_una
        self.dsacks = 0
        self.newly: list[tuple[Seq, Seq]] = []  # what the last update() added
        self.last_dsacks: list[tuple[Seq, Seq]] = []  # duplicate blocks in the last update()

    def clear(self) -> None:
        self.ranges = []

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def update(self, snd_una: Seq, snd_max: Seq, blocks: tuple[tuple[int, int], ...]) -> int:
        """Merge reported blocks; returns how many bytes became newly SACKed."""
        before = self.sacked_bytes()
        old = self.ranges
        self.newly = []
        self.last_dsacks = []
        ranges = [(start, end) for start, end in self.ranges if S.gt(end, snd_una)]
        for raw_start, raw_end in blocks:
            start, end = Seq(raw_start), Seq(raw_end)
            if not S.lt(start, end) or S.gt(end, snd_max):
                continue  # malformed or about data never sent: ignore (RFC 6675 5)
            if S.le(end, snd_una):
                self.dsacks += 1  # RFC 2883: a duplicate segment was received
                self.last_dsacks.append((start, end))
                continue
            if S.lt(start, snd_una):
                start = snd_una
            ranges.append((start, end))
            self.newly += _subtract(start, end, old)
        ranges.sort(key=lambda r: S.diff(r[0], snd_una))
        merged: list[tuple[Seq, Seq]] = []
        for start, end in ranges:
            if merged and S.le(start, merged[-1][1]):
                if S.gt(end, merged[-1][1]):
                    merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        self.ranges = merged[-MAX_RANGES:]
        # Ranges that now start at or below snd_una were cumulatively acknowledged.
        self.ranges = [
            (snd_una if S.lt(s, snd_una) else s, e) for s, e in self.ranges if S.gt(e, snd_una)
        ]
        return max(0, self.sacked_bytes() - before)

    def covers(self, start: Seq, end: Seq) -> bool:
        """Whether [start, end) lies inside one SACKed range."""
        return any(S.le(r_start, start) and S.le(end, r_end) for r_start, r_end in self.ranges)

    def sacked_bytes(self) -> int:
        return sum(S.diff(end, start) for start, end in self.ranges)

    def highest(self) -> Seq | None:
        return self.ranges[-1][1] if self.ranges else None

    def sacked_end(self, at: Seq) -> Seq | None:
        """The end of the SACKed range holding ``at``, if one does."""
        for start, end in self.ranges:
            if S.le(start, at) and S.lt(at, end):
                return end
        return None

    def next_sacked_start(self, at: Seq) -> Seq | None:
        """The start of the first SACKed range beyond ``at``."""
        for start, _end in self.ranges:
            if S.gt(start, at):
                return start
        return None

    def next_hole(self, at: Seq) -> tuple[Seq, Seq] | None:
        """The first un-SACKed range at or after ``at`` that lies below a SACKed one."""
        for start, end in self.ranges:
            if S.lt(at, start):
                return (at, start)
            if S.lt(at, end):
                at = end
        return None

    def hole_bytes_from(self, at: Seq) -> int:
        """Bytes not SACKed between ``at`` and the highest SACKed byte."""
        total = 0
        for start, end in self.ranges:
            if S.lt(at, start):
                total += S.diff(start, at)
            if S.lt(at, end):
                at = end
        return total


def _subtract(start: Seq, end: Seq, ranges: list[tuple[Seq, Seq]]) -> list[tuple[Seq, Seq]]:
    """The parts of [start, end) not inside ``ranges`` (disjoint and ascending)."""
    out: list[tuple[Seq, Seq]] = []
    at = start
    for r_start, r_end in ranges:
        if S.le(r_end, at):
            continue
        if S.ge(r_start, end):
            break
        if S.lt(at, r_start):
            out.append((at, r_start))
        if S.gt(r_end, at):
            at = r_end
        if S.ge(at, end):
            return out
    if S.lt(at, end):
        out.append((at, end))
    return out
