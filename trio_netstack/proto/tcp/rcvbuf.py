"""The receive side's data: in-order bytes for the application and the
out-of-order queue with the SACK blocks that describe it (RFC 2018).

Out-of-order segments are kept as disjoint, sorted ranges (overlaps are merged,
so retransmitted or overlapping data costs nothing extra); the number of ranges
is bounded. The SACK blocks we report put the range that changed most recently
first, as RFC 2018 4 requires.
"""

from __future__ import annotations

from . import seq as S
from .seq import Seq


class ReceiveQueue:
    # Slots: one per connection (docs/performance.md).
    __slots__ = (
        "_ranges",
        "_recent",
        "data",
        "dropped_ranges",
        "max_ranges",
        "ooo_bytes",
        "rcv_nxt",
    )

    def __init__(self, rcv_nxt: Seq, max_ranges: int = 256) -> None:
        self.rcv_nxt = rcv_nxt
        self.data = bytearray()  # in order, not yet read by the application
        self.max_ranges = max_ranges
        self._ranges: list[tuple[Seq, bytes]] = []  # disjoint, sorted from rcv_nxt on
        self._recent: list[Seq] = []  # starts of recently changed ranges, newest first
        self.ooo_bytes = 0
        self.dropped_ranges = 0

    def __len__(self) -> int:
        return len(self.data)

    def add(self, start: Seq, payload: bytes | memoryview) -> tuple[int, bool]:
        """Add data starting at ``start`` (already trimmed to the window).

        Returns ``(bytes newly in order, whether it went to the out-of-order queue)``.
        """
        offset = S.diff(start, self.rcv_nxt)
        if offset < 0:  # overlaps what we already have: keep the new part only
            payload = payload[-offset:]
            offset = 0
            start = self.rcv_nxt
        if not payload:
            return 0, False
        if offset == 0:
            self.data += payload
            self.rcv_nxt = S.add(self.rcv_nxt, len(payload))
            return len(payload) + self._pull(), False
        self._insert(offset, bytes(payload))
        return 0, True

    def _insert(self, offset: int, payload: bytes) -> None:
        base = self.rcv_nxt
        end = offset + len(payload)
        lo, hi = offset, end
        keep: list[tuple[int, bytes]] = []
        pieces: list[tuple[int, bytes]] = []
        for r_start, r_data in self._ranges:
            r_off = S.diff(r_start, base)
            r_end = r_off + len(r_data)
            if r_end < lo or r_off > hi:
                keep.append((r_off, r_data))
            else:
                pieces.append((r_off, r_data))
                lo, hi = min(lo, r_off), max(hi, r_end)
        if pieces:
            buf = bytearray(hi - lo)
            for r_off, r_data in pieces:
                buf[r_off - lo : r_off - lo + len(r_data)] = r_data
            buf[offset - lo : end - lo] = payload  # identical bytes from a sane peer
            block = bytes(buf)
        else:
            if len(keep) >= self.max_ranges:
                self.dropped_ranges += 1  # too fragmented: the peer will retransmit
                return
            block = payload
        keep.append((lo, block))
        keep.sort()
        self._ranges = [(S.add(base, o), d) for o, d in keep]
        self.ooo_bytes = sum(len(d) for _, d in keep)
        first = S.add(base, lo)
        self._recent = [first, *[r for r in self._recent if r != first][:3]]

    def _pull(self) -> int:
        """Move ranges that became contiguous into the in-order data."""
        moved = 0
        while self._ranges:
            r_start, r_data = self._ranges[0]
            off = S.diff(r_start, self.rcv_nxt)
            if off > 0:
                break
            self._ranges.pop(0)
            if off + len(r_data) <= 0:
                continue
            new = r_data[-off:] if off < 0 else r_data
            self.data += new
            self.rcv_nxt = S.add(self.rcv_nxt, len(new))
            moved += len(new)
        if moved:
            self.ooo_bytes = sum(len(d) for _, d in self._ranges)
        return moved

    def read(self, max_bytes: int) -> bytes:
        chunk = bytes(self.data[:max_bytes])
        del self.data[:max_bytes]  # bytearray deletes from the front in O(1) amortised
        return chunk

    def sack_blocks(self, limit: int) -> tuple[tuple[int, int], ...]:
        """Up to ``limit`` SACK blocks, the most recently changed range first (RFC 2018 4)."""
        if not self._ranges:
            self._recent = []
            return ()
        blocks = [(start, S.add(start, len(d))) for start, d in self._ranges]
        ordered: list[tuple[Seq, Seq]] = []
        for recent in self._recent:
            for b in blocks:
                if S.le(b[0], recent) and S.lt(recent, b[1]) and b not in ordered:
                    ordered.append(b)
        ordered += [b for b in blocks if b not in ordered]
        return tuple((int(a), int(b)) for a, b in ordered[:limit])

    @property
    def has_gaps(self) -> bool:
        return bool(self._ranges)

    @property
    def range_count(self) -> int:
        return len(self._ranges)
