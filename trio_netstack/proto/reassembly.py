"""IPv4 reassembly (RFC 791 3.2, RFC 815), hardened the way Linux is.

Fragments are keyed by (source, destination, protocol, identification). Each
datagram keeps its fragments sorted by offset; because any overlap discards
the whole datagram (Linux since 4.19, in the spirit of RFC 5722 for IPv6), the
datagram is complete exactly when the bytes held equal the total length that
the last fragment (MF=0) announced. Exact duplicates are ignored and counted.

Limits, all configurable: a reassembly timeout (30 s like Linux's
ipfrag_time), after which ICMP time exceeded (code 1) goes back if the first
fragment had arrived (RFC 792, RFC 1122 3.3.2); a cap on concurrent datagrams
and on buffered bytes (each fragment also charged a fixed overhead so that a
flood of tiny fragments cannot hide), the oldest datagram evicted first; a cap
on fragments per datagram; and a datagram that would exceed 65535 bytes is
dropped (the "ping of death").
"""

from __future__ import annotations

import bisect
from collections import OrderedDict

import attrs

from ..wire import ipv4 as wip
from .counters import Counters

FRAGMENT_OVERHEAD = 64  # bytes charged per fragment on top of its data


@attrs.frozen
class ReassemblyConfig:
    timeout: float = 30.0
    max_datagrams: int = 256
    max_bytes: int = 4 * 1024 * 1024  # Linux's ipfrag_high_thresh
    max_fragments: int = 2048


@attrs.define(slots=True)
class _Datagram:
    created: float
    deadline: float
    offsets: list[int] = attrs.Factory(list)
    pieces: list[bytes] = attrs.Factory(list)
    held: int = 0  # data bytes held
    total: int | None = None  # data length, known once the last fragment came
    first_header: wip.Ipv4Header | None = None
    first_data: bytes = b""  # the start of the first fragment's data, for time exceeded
    cost: int = 0


@attrs.define(slots=True)
class Expired:
    """A datagram that timed out; ``first`` is set when its first fragment had arrived."""

    src: int
    dst: int
    first: tuple[wip.Ipv4Header, bytes] | None  # its header and first data bytes


Key = tuple[int, int, int, int]


class Reassembler:
    def __init__(self, config: ReassemblyConfig | None = None) -> None:
        self.config = config or ReassemblyConfig()
        self.counters = Counters()
        self._datagrams: OrderedDict[Key, _Datagram] = OrderedDict()  # oldest first
        self.bytes_held = 0
        self.expired: list[Expired] = []

    def __len__(self) -> int:
        return len(self._datagrams)

    def input(
        self, header: wip.Ipv4Header, data: memoryview, now: float
    ) -> tuple[wip.Ipv4Header, bytes] | None:
        """Add a fragment; return ``(header, data)`` of the whole datagram when complete."""
        counters = self.counters
        counters.incr("fragments")
        offset = header.fragment_offset
        end = offset + len(data)
        more = header.more_fragments
        if end + header.header_length > wip.MAX_PACKET:
            counters.incr("too_long")
            self._drop(self._key(header))
            return None
        if more and (len(data) == 0 or len(data) % 8):
            # RFC 791: every fragment but the last carries a multiple of 8 bytes.
            counters.incr("bad_fragment_length")
            return None
        key = self._key(header)
        dgram = self._datagrams.get(key)
        if dgram is None:
            dgram = _Datagram(now, now + self.config.timeout)
            self._datagrams[key] = dgram
            counters.incr("datagrams_started")
        if not more:
            if dgram.total is not None and dgram.total != end:
                counters.incr("inconsistent_length")
                self._drop(key)
                return None
            if dgram.offsets and self._max_end(dgram) > end:
                counters.incr("beyond_end")
                self._drop(key)
                return None
            dgram.total = end
        elif dgram.total is not None and end > dgram.total:
            counters.incr("beyond_end")
            self._drop(key)
            return None
        # Where does this fragment go, and does it overlap a neighbour?
        i = bisect.bisect_left(dgram.offsets, offset)
        if (
            i < len(dgram.offsets)
            and dgram.offsets[i] == offset
            and len(dgram.pieces[i]) == len(data)
        ):
            counters.incr("duplicates")
            return None
        if (i > 0 and dgram.offsets[i - 1] + len(dgram.pieces[i - 1]) > offset) or (
            i < len(dgram.offsets) and dgram.offsets[i] < end
        ):
            counters.incr("overlaps")
            self._drop(key)
            return None
        if len(dgram.offsets) >= self.config.max_fragments:
            counters.incr("too_many_fragments")
            self._drop(key)
            return None
        piece = bytes(data)
        dgram.offsets.insert(i, offset)
        dgram.pieces.insert(i, piece)
        dgram.held += len(piece)
        cost = len(piece) + FRAGMENT_OVERHEAD
        dgram.cost += cost
        self.bytes_held += cost
        if offset == 0:
            dgram.first_header = header
            dgram.first_data = piece[:64]
        if dgram.total is not None and dgram.held == dgram.total:
            del self._datagrams[key]
            self.bytes_held -= dgram.cost
            counters.incr("reassembled")
            assert dgram.first_header is not None  # offset 0 is among contiguous pieces
            first = dgram.first_header
            whole = attrs.evolve(
                first, total_length=first.header_length + dgram.total, flags_fragment=0
            )
            return whole, b"".join(dgram.pieces)
        self._enforce_limits()
        return None

    @staticmethod
    def _max_end(dgram: _Datagram) -> int:
        return dgram.offsets[-1] + len(dgram.pieces[-1])

    @staticmethod
    def _key(header: wip.Ipv4Header) -> Key:
        return (header.src, header.dst, header.protocol, header.ident)

    def _drop(self, key: Key) -> None:
        dgram = self._datagrams.pop(key, None)
        if dgram is not None:
            self.bytes_held -= dgram.cost
            self.counters.incr("datagrams_dropped")

    def _enforce_limits(self) -> None:
        # Evict the oldest datagrams first, as Linux's frag queue eviction does.
        cfg = self.config
        while self._datagrams and (
            len(self._datagrams) > cfg.max_datagrams or self.bytes_held > cfg.max_bytes
        ):
            self.counters.incr("evicted")
            self._drop(next(iter(self._datagrams)))

    def get_timer(self) -> float | None:
        for dgram in self._datagrams.values():
            return dgram.deadline  # insertion order == deadline order (fixed timeout)
        return None

    def handle_timer(self, now: float) -> None:
        while self._datagrams:
            key, dgram = next(iter(self._datagrams.items()))
            if dgram.deadline > now:
                return
            self._drop(key)
            self.counters.incr("timeouts")
            first = dgram.first_header
            self.expired.append(
                Expired(key[0], key[1], None if first is None else (first, dgram.first_data))
            )
