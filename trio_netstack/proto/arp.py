"""ARP resolution and the neighbour cache (RFC 826, RFC 1122 2.3.2, with Linux's NUD states).

Theory of operation
-------------------
An entry moves through the neighbour-unreachability-detection states that Linux
uses (borrowed from IPv6 ND, RFC 4861 7.3.2):

* INCOMPLETE: a broadcast request went out; packets for the address wait in a
  bounded queue. Requests repeat every ``retrans_time`` up to
  ``multicast_probes``; then the entry is removed and the queued packets are
  reported in :attr:`ArpMachine.unreachable` ("host unreachable").
* REACHABLE: a reply confirmed the mapping ``reachable_time`` ago or less.
* STALE: older than that (evaluated lazily when used) or learnt from a request.
  Using it sends the packet and enters DELAY.
* DELAY: after ``delay_time`` without confirmation, PROBE.
* PROBE: unicast requests every ``retrans_time`` up to ``unicast_probes``;
  then the entry is dropped.

Unused STALE entries are collected after ``stale_gc_time``; the table has a hard
size limit. We answer requests only for our own addresses (RFC 826 "?Am I the
target protocol address?") and announce a new address with a gratuitous request.
"""

from __future__ import annotations

import heapq

import attrs

from ..wire import arp as warp
from ..wire import ethernet
from ..wire.addr import BROADCAST_MAC, LIMITED_BROADCAST, ZERO_MAC, is_multicast, multicast_mac
from ..wire.errors import ParseError
from .counters import Counters

INCOMPLETE = "INCOMPLETE"
REACHABLE = "REACHABLE"
STALE = "STALE"
DELAY = "DELAY"
PROBE = "PROBE"


@attrs.frozen
class ArpConfig:
    """Limits and timers; the defaults are Linux's (net.ipv4.neigh.default.*)."""

    max_entries: int = 1024
    reachable_time: float = 30.0
    delay_time: float = 5.0
    retrans_time: float = 1.0
    multicast_probes: int = 3
    unicast_probes: int = 3
    stale_gc_time: float = 60.0
    gc_interval: float = 30.0
    max_queue_per_entry: int = 64
    max_queued_total: int = 1024


@attrs.define(slots=True)
class _Entry:
    ip: int
    mac: bytes
    state: str
    confirmed: float  # last time a reply confirmed reachability
    used: float
    probes: int = 0
    deadline: float | None = None
    queue: list[bytes] = attrs.Factory(list)


@attrs.frozen
class NeighbourInfo:
    ip: int
    mac: bytes | None
    state: str


class ArpMachine:
    """The neighbour cache of one Ethernet interface.

    Outputs are appended to :attr:`frames_out` (complete Ethernet frames) and
    :attr:`unreachable` (``(ip, [queued IPv4 packets])`` for resolutions given up);
    the caller drains both after every call.
    """

    def __init__(self, mac: bytes, config: ArpConfig | None = None) -> None:
        self.mac = mac
        self.config = config or ArpConfig()
        self.addresses: set[int] = set()
        self.counters = Counters()
        self.frames_out: list[bytes] = []
        self.unreachable: list[tuple[int, list[bytes]]] = []
        self._entries: dict[int, _Entry] = {}
        self._heap: list[tuple[float, int]] = []  # (deadline, ip); stale items skipped
        self._queued = 0
        self._next_gc: float | None = None

    # --- outputs -------------------------------------------------------------------

    def take_frames(self) -> list[bytes]:
        """The Ethernet frames to send, in order (ARP's own and released packets)."""
        out = self.frames_out
        if out:  # when empty, no new list (taken every round): do not modify it
            self.frames_out = []
        return out

    def take_unreachable(self) -> list[tuple[int, list[bytes]]]:
        """``(neighbour, [its queued IPv4 packets])`` for each resolution given up."""
        out = self.unreachable
        if out:  # when empty, no new list (taken every round): do not modify it
            self.unreachable = []
        return out

    # --- configuration -------------------------------------------------------------

    def add_address(self, ip: int, now: float) -> None:
        """Own ``ip`` and announce it with a gratuitous ARP request (RFC 5227 3)."""
        self.addresses.add(ip)
        self._send_arp(warp.OP_REQUEST, BROADCAST_MAC, ip, ZERO_MAC, ip)
        self.counters.incr("gratuitous_sent")

    def remove_address(self, ip: int) -> None:
        self.addresses.discard(ip)

    # --- output path -----------------------------------------------------------------

    def output(self, next_hop: int, payload: bytes, now: float) -> bool:
        """Send an IPv4 packet to ``next_hop`` (resolving it first when needed).

        Returns True when the call armed a timer (a resolution started, or a stale
        entry is to be verified): whoever runs :meth:`handle_timer` must then look at
        :meth:`get_timer` again. Frames go to :meth:`take_frames`.
        """
        if next_hop == LIMITED_BROADCAST:
            self.frames_out.append(
                ethernet.build(BROADCAST_MAC, self.mac, ethernet.ETHERTYPE_IPV4, payload)
            )
            return False
        if is_multicast(next_hop):
            self.frames_out.append(
                ethernet.build(multicast_mac(next_hop), self.mac, ethernet.ETHERTYPE_IPV4, payload)
            )
            return False
        entry = self._entries.get(next_hop)
        if entry is None:
            entry = self._new_incomplete(next_hop, now)
            if entry is None:
                self.unreachable.append((next_hop, [payload]))
                return False
            entry.used = now
            self._enqueue(entry, payload)
            return True
        entry.used = now
        if entry.state == INCOMPLETE:
            self._enqueue(entry, payload)
            return False
        if entry.state == REACHABLE and now >= entry.confirmed + self.config.reachable_time:
            entry.state = STALE
        if entry.state == STALE:
            # RFC 4861 7.3.3: use the stale address now, verify it shortly.
            entry.state = DELAY
            self._schedule(entry, now + self.config.delay_time)
            armed = True
        else:
            armed = False
        self.frames_out.append(
            ethernet.build(entry.mac, self.mac, ethernet.ETHERTYPE_IPV4, payload)
        )
        return armed

    def confirm(self, ip: int, now: float) -> None:
        """Upper-layer proof of reachability (e.g. TCP saw new data ACKed)."""
        entry = self._entries.get(ip)
        if entry is not None and entry.state != INCOMPLETE:
            entry.confirmed = now
            entry.state = REACHABLE
            entry.deadline = None

    def _new_incomplete(self, ip: int, now: float) -> _Entry | None:
        if len(self._entries) >= self.config.max_entries and not self._evict_one():
            self.counters.incr("table_full")
            return None
        entry = _Entry(ip, ZERO_MAC, INCOMPLETE, confirmed=-1.0, used=now, probes=1)
        self._entries[ip] = entry
        self._request(entry, broadcast=True)
        self._schedule(entry, now + self.config.retrans_time)
        self._ensure_gc(now)
        return entry

    def _enqueue(self, entry: _Entry, payload: bytes) -> None:
        if len(entry.queue) >= self.config.max_queue_per_entry or (
            self._queued >= self.config.max_queued_total
        ):
            # Like Linux's unres_qlen: the oldest waiting packet makes room.
            if not entry.queue:
                self.counters.incr("queue_full_drop")
                return
            entry.queue.pop(0)
            self._queued -= 1
            self.counters.incr("queue_full_drop")
        entry.queue.append(payload)
        self._queued += 1

    def _evict_one(self) -> bool:
        """Make room by dropping the least recently used entry that is not resolving."""
        victim: _Entry | None = None
        for entry in self._entries.values():
            if entry.state != INCOMPLETE and (victim is None or entry.used < victim.used):
                victim = entry
        if victim is None:
            return False
        del self._entries[victim.ip]
        self.counters.incr("evicted")
        return True

    # --- input path ------------------------------------------------------------------

    def input_untrusted(self, data: memoryview | bytes, now: float) -> None:
        """Process an ARP packet (the Ethernet payload)."""
        try:
            pkt = warp.parse_untrusted(data)
        except ParseError as exc:
            self.counters.incr(exc.reason)
            return
        self.counters.incr("rx_request" if pkt.op == warp.OP_REQUEST else "rx_reply")
        if pkt.sha[0] & 1:
            self.counters.incr("bad_sender_mac")  # broadcast/multicast sender: forged
            return
        if pkt.sha == self.mac:
            self.counters.incr("own_frame")  # our own broadcast echoed back
            return
        if pkt.spa == 0:
            # RFC 5227 2.1.1 address probe: answer if it asks for one of ours.
            if pkt.op == warp.OP_REQUEST and pkt.tpa in self.addresses:
                self._send_arp(warp.OP_REPLY, pkt.sha, pkt.tpa, pkt.sha, 0)
                self.counters.incr("tx_reply")
            return
        if pkt.spa in self.addresses:
            self.counters.incr("address_conflict")
            return
        if pkt.spa == LIMITED_BROADCAST or is_multicast(pkt.spa):
            self.counters.incr("bad_sender_ip")
            return
        for_us = pkt.tpa in self.addresses
        entry = self._entries.get(pkt.spa)
        # RFC 826: update an existing entry for the sender ("merge"), and add one only
        # when we are the target (Linux also ignores unsolicited gratuitous ARP).
        if entry is not None:
            self._learn(entry, pkt.sha, is_reply=pkt.op == warp.OP_REPLY and for_us, now=now)
        elif for_us:
            if len(self._entries) < self.config.max_entries or self._evict_one():
                entry = _Entry(pkt.spa, pkt.sha, STALE, confirmed=-1.0, used=now)
                if pkt.op == warp.OP_REPLY:
                    entry.state = REACHABLE
                    entry.confirmed = now
                self._entries[pkt.spa] = entry
                self._ensure_gc(now)
            else:
                self.counters.incr("table_full")
        if for_us and pkt.op == warp.OP_REQUEST:
            self._send_arp(warp.OP_REPLY, pkt.sha, pkt.tpa, pkt.sha, pkt.spa)
            self.counters.incr("tx_reply")
        elif not for_us:
            self.counters.incr("not_for_us")

    def _learn(self, entry: _Entry, mac: bytes, *, is_reply: bool, now: float) -> None:
        if entry.state == INCOMPLETE:
            entry.mac = mac
            entry.state = REACHABLE if is_reply else STALE
            entry.confirmed = now
            entry.deadline = None
            entry.probes = 0
            for payload in entry.queue:
                self.frames_out.append(
                    ethernet.build(mac, self.mac, ethernet.ETHERTYPE_IPV4, payload)
                )
            self._queued -= len(entry.queue)
            entry.queue = []
            self.counters.incr("resolved")
            return
        if mac != entry.mac:
            self.counters.incr("mac_changed")
            entry.mac = mac
            if not is_reply:
                entry.state = STALE
                entry.deadline = None
        if is_reply:
            entry.state = REACHABLE
            entry.confirmed = now
            entry.deadline = None
            entry.probes = 0

    # --- timers ----------------------------------------------------------------------

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, ip = heap[0]
            entry = self._entries.get(ip)
            if entry is not None and entry.deadline == deadline:
                break
            heapq.heappop(heap)  # superseded
        first = heap[0][0] if heap else None
        if self._next_gc is not None and (first is None or self._next_gc < first):
            return self._next_gc
        return first

    def handle_timer(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, ip = heapq.heappop(heap)
            entry = self._entries.get(ip)
            if entry is None or entry.deadline != deadline:
                continue
            entry.deadline = None
            self._expire(entry, now)
        if self._next_gc is not None and self._next_gc <= now:
            self._collect(now)

    def _expire(self, entry: _Entry, now: float) -> None:
        cfg = self.config
        if entry.state == INCOMPLETE:
            if entry.probes >= cfg.multicast_probes:
                del self._entries[entry.ip]
                self._queued -= len(entry.queue)
                self.counters.incr("resolution_failed")
                self.unreachable.append((entry.ip, entry.queue))
                return
            entry.probes += 1
            self._request(entry, broadcast=True)
            self._schedule(entry, now + cfg.retrans_time)
        elif entry.state == DELAY:
            entry.state = PROBE
            entry.probes = 1
            self._request(entry, broadcast=False)
            self._schedule(entry, now + cfg.retrans_time)
        elif entry.state == PROBE:
            if entry.probes >= cfg.unicast_probes:
                del self._entries[entry.ip]
                self.counters.incr("probe_failed")
                return
            entry.probes += 1
            self._request(entry, broadcast=False)
            self._schedule(entry, now + cfg.retrans_time)

    def _collect(self, now: float) -> None:
        limit = now - self.config.stale_gc_time
        for ip in [
            ip
            for ip, e in self._entries.items()
            if e.state in (STALE, REACHABLE) and e.used < limit and e.confirmed < limit
        ]:
            del self._entries[ip]
            self.counters.incr("gc_removed")
        self._next_gc = now + self.config.gc_interval if self._entries else None

    def _ensure_gc(self, now: float) -> None:
        if self._next_gc is None:
            self._next_gc = now + self.config.gc_interval

    def _schedule(self, entry: _Entry, deadline: float) -> None:
        entry.deadline = deadline
        heapq.heappush(self._heap, (deadline, entry.ip))

    # --- helpers ---------------------------------------------------------------------

    def _request(self, entry: _Entry, *, broadcast: bool) -> None:
        src_ip = self._source_for(entry.ip)
        dst_mac = BROADCAST_MAC if broadcast else entry.mac
        self._send_arp(warp.OP_REQUEST, dst_mac, src_ip, ZERO_MAC, entry.ip)
        self.counters.incr("tx_request")

    def _source_for(self, target: int) -> int:
        # Any of our addresses will do on a single-subnet interface; prefer one that
        # shares the most leading bits with the target (Linux picks the subnet's).
        if not self.addresses:
            return 0
        return min(self.addresses, key=lambda a: a ^ target)

    def _send_arp(self, op: int, dst_mac: bytes, spa: int, tha: bytes, tpa: int) -> None:
        body = warp.build(op, self.mac, spa, tha, tpa)
        self.frames_out.append(ethernet.build(dst_mac, self.mac, ethernet.ETHERTYPE_ARP, body))
        self.counters.incr("tx_frames")  # every ARP frame, whatever its purpose

    def neighbours(self) -> list[NeighbourInfo]:
        return [
            NeighbourInfo(e.ip, None if e.state == INCOMPLETE else e.mac, e.state)
            for e in self._entries.values()
        ]

    def queued_packets(self) -> int:
        return self._queued
