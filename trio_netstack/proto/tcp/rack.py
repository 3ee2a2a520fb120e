"""RACK: time-based loss detection (RFC 8985 6), the record of what was sent when.

Every data segment sent is recorded with its transmission time. When the
receiver acknowledges or SACKs a segment, RACK remembers the most recently
*sent* segment known delivered; any segment sent before it that is still
missing after an extra reordering window (a quarter of the minimum RTT, or zero
once recovery is under way and no reordering was seen) is deemed lost. So loss
is decided by time rather than by counting duplicate ACKs, which copes with
reordering and with lost retransmissions (RFC 8985 2).

The record list is ordered by sequence number; its length is bounded by the
data in flight (one entry per segment).
"""

from __future__ import annotations

import bisect
import itertools
import math

import attrs

from . import seq as S
from .sack import Scoreboard
from .seq import Seq

MAX_REO_WND_MULT = 16
REO_WND_PERSIST = 16  # recoveries a widened window lasts (RFC 8985 6.2 step 4)


@attrs.define(slots=True)
class SentSegment:
    start: Seq
    end: Seq
    xmit_ts: float
    order: int  # transmission count: orders sends even within one clock tick
    retransmitted: bool = False
    sacked: bool = False
    lost: bool = False

    @property
    def length(self) -> int:
        return S.diff(self.end, self.start)


class Rack:
    """RACK state and the sent-segment record, with running byte totals so that
    "pipe" and "is anything lost" cost O(1) per ACK on the loss-free path."""

    # Slots: one per connection (docs/performance.md).
    __slots__ = (
        "_head",
        "_lost",
        "_sacked",
        "_segs",
        "_sent",
        "_total",
        "end_seq",
        "fack",
        "last_dsack_bump",
        "lost_marked",
        "min_rtt",
        "order",
        "reo_wnd_mult",
        "reo_wnd_persist",
        "reordering_seen",
        "rtt",
        "xmit_ts",
    )

    def __init__(self) -> None:
        self._segs: list[SentSegment] = []  # entries before _head are acknowledged
        self._head = 0
        self.xmit_ts = -math.inf  # RACK.xmit_ts: send time of the newest delivered segment
        self.end_seq: Seq | None = None  # RACK.end_seq
        # RFC 8985 orders transmissions by (xmit_ts, end_seq); a counter does the same
        # without ties when the clock has not moved between two sends.
        self.order = -1  # transmission order of that segment
        self._sent = 0
        self.rtt = 0.0  # RACK.rtt: the RTT of that segment
        self.min_rtt = math.inf
        self.fack: Seq | None = None  # highest sequence delivered (acked or SACKed)
        self.reordering_seen = False
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = 0
        self.last_dsack_bump = -math.inf
        self.lost_marked = 0
        self._total = 0  # bytes in the record
        self._sacked = 0
        self._lost = 0  # lost and not yet sent again

    @property
    def segments(self) -> list[SentSegment]:
        """The outstanding segments in sequence order (a copy-free view for queries)."""
        if self._head:
            del self._segs[: self._head]
            self._head = 0
        return self._segs

    def first(self) -> SentSegment | None:
        return self._segs[self._head] if self._head < len(self._segs) else None

    def clear(self) -> None:
        """After a retransmission timeout everything is sent again from snd_una."""
        self._segs = []
        self._head = 0
        self._total = self._sacked = self._lost = 0

    # --- sending -----------------------------------------------------------------------

    def on_send(self, start: Seq, end: Seq, now: float) -> None:
        """Record a transmission of [start, end): new data, or a retransmission."""
        segs = self._segs
        self._sent += 1
        if self._head >= len(segs) or S.ge(start, segs[-1].end):
            segs.append(SentSegment(start, end, now, self._sent))
            self._total += S.diff(end, start)
            return
        segs = self.segments  # compacted, so indexes below are plain
        touched = False
        i = self._find(start, segs)
        while i < len(segs):
            seg = segs[i]
            if S.ge(seg.start, end):
                break
            if S.lt(start, seg.end):
                # Only [start, end) went out again: split off what lies outside it, so
                # that part keeps its own state (lost stays lost, and is resent later).
                if S.lt(seg.start, start):
                    segs.insert(i, attrs.evolve(seg, end=start))
                    seg.start = start
                    i += 1
                if S.gt(seg.end, end):
                    segs.insert(i + 1, attrs.evolve(seg, start=end))
                    seg.end = end
                seg.xmit_ts = now
                seg.order = self._sent
                seg.retransmitted = True
                if seg.lost:
                    seg.lost = False
                    self._lost -= seg.length
                touched = True
            i += 1
        if not touched:  # resent after the record was cleared (timeout): keep order
            index = next((i for i, s in enumerate(segs) if S.gt(s.start, start)), len(segs))
            segs.insert(index, SentSegment(start, end, now, self._sent, retransmitted=True))
            self._total += S.diff(end, start)

    # --- acknowledgments -----------------------------------------------------------------

    def on_ack(self, snd_una: Seq, sb: Scoreboard, now: float) -> None:
        """RFC 8985 6.2 steps 1-3: update RACK from segments newly delivered, by the
        cumulative ACK or by the ranges the scoreboard's last update newly SACKed (so an
        ACK costs what it changed, not what is outstanding)."""
        delivered: list[SentSegment] = []
        segs = self._segs
        head = self._head
        while head < len(segs) and S.le(segs[head].end, snd_una):
            seg = segs[head]
            head += 1
            self._forget(seg)
            if not seg.sacked:
                delivered.append(seg)
        self._head = head
        if head > 1024 and head > len(segs) // 2:
            del segs[:head]  # compact now and then: amortised O(1) per segment
            self._head = head = 0
        if sb.newly and head < len(segs):
            base = segs[head].start
            for new_start, new_end in sb.newly:
                right = S.diff(new_end, base)
                i = self._find(new_start, segs)
                while i < len(segs) and S.diff(segs[i].start, base) < right:
                    seg = segs[i]
                    if not seg.sacked and sb.covers(seg.start, seg.end):
                        seg.sacked = True
                        self._sacked += seg.length
                        if seg.lost:
                            seg.lost = False
                            self._lost -= seg.length
                        delivered.append(seg)
                    i += 1
        for seg in delivered:
            rtt = now - seg.xmit_ts
            # Step 2: an ACK for the original transmission of a retransmitted segment
            # (sooner than any RTT we ever saw) says nothing about the retransmission.
            if seg.retransmitted and rtt < self.min_rtt:
                continue
            if self.fack is not None and S.lt(seg.end, self.fack) and not seg.retransmitted:
                self.reordering_seen = True  # step 3: delivered below what was delivered
            if self.fack is None or S.gt(seg.end, self.fack):
                self.fack = seg.end
            if seg.order > self.order:
                self.order = seg.order
                self.xmit_ts = seg.xmit_ts
                self.end_seq = seg.end
                self.rtt = rtt

    def _find(self, at: Seq, segs: list[SentSegment]) -> int:
        """Index of the first outstanding segment that ends after ``at`` (binary search)."""
        head = self._head if segs is self._segs else 0
        if head >= len(segs):
            return head
        base = segs[head].start
        target = S.diff(at, base)
        return bisect.bisect_right(segs, target, lo=head, key=lambda s: S.diff(s.end, base))

    def _forget(self, seg: SentSegment) -> None:
        self._total -= seg.length
        if seg.sacked:
            self._sacked -= seg.length
        if seg.lost:
            self._lost -= seg.length

    def sample_rtt(self, rtt: float) -> None:
        if rtt >= 0:
            self.min_rtt = min(self.min_rtt, rtt)

    # --- loss detection -------------------------------------------------------------------

    def reo_wnd(self, in_recovery: bool, srtt: float | None = None) -> float:
        """RFC 8985 6.2 step 4: min_RTT/4 times a multiplier that D-SACKs raise, capped
        at SRTT; zero in recovery while no reordering was seen."""
        if not self.reordering_seen and in_recovery:
            return 0.0
        if self.min_rtt == math.inf:
            return 0.0
        window = self.reo_wnd_mult * self.min_rtt / 4
        return min(window, srtt) if srtt is not None else window

    def on_dsack(self, now: float) -> None:
        """A D-SACK: we retransmitted spuriously, so widen the reordering window
        (RFC 8985 6.2 step 4, at most once per round trip) and keep it for 16 recoveries."""
        self.reordering_seen = True
        if now - self.last_dsack_bump >= max(self.min_rtt, 0.0) or self.min_rtt == math.inf:
            self.reo_wnd_mult = min(self.reo_wnd_mult + 1, MAX_REO_WND_MULT)
            self.last_dsack_bump = now
        self.reo_wnd_persist = REO_WND_PERSIST

    def on_recovery_end(self) -> None:
        if self.reo_wnd_persist > 0:
            self.reo_wnd_persist -= 1
            if self.reo_wnd_persist == 0:
                self.reo_wnd_mult = 1

    def detect_loss(self, now: float, in_recovery: bool, srtt: float | None = None) -> float | None:
        """RFC 8985 6.2 step 5: mark lost segments; return when to look again (or None)."""
        if self.end_seq is None:
            return None
        reo_wnd = self.reo_wnd(in_recovery, srtt)
        wait = math.inf
        for seg in itertools.islice(self._segs, self._head, None):
            if seg.sacked or seg.lost:
                continue
            if seg.order >= self.order:  # sent after (or is) the newest delivered one
                if not seg.retransmitted:
                    break  # first transmissions go out in sequence order: none left
                continue
            remaining = seg.xmit_ts + self.rtt + reo_wnd - now
            if remaining <= 0:
                seg.lost = True
                self._lost += seg.length
                self.lost_marked += 1
            else:
                wait = min(wait, remaining)
        return None if wait == math.inf else now + wait

    def mark_lost(self, seg: SentSegment) -> None:
        if not seg.lost and not seg.sacked:
            seg.lost = True
            self._lost += seg.length

    # --- queries ---------------------------------------------------------------------------

    def first_lost(self) -> SentSegment | None:
        if self._lost <= 0:
            return None
        for seg in itertools.islice(self._segs, self._head, None):
            if seg.lost and not seg.sacked:
                return seg
        return None

    def pipe(self) -> int:
        """RFC 6675 "pipe" with RACK's view: not SACKed and not (lost and unrepaired)."""
        return self._total - self._sacked - self._lost

    def last(self) -> SentSegment | None:
        return self._segs[-1] if self._head < len(self._segs) else None
