"""Loss recovery: fast retransmit and recovery, SACK, RACK-TLP and D-SACK undo.

Without SACK: fast retransmit on the third duplicate ACK (RFC 5681 3.2), limited transmit
(RFC 3042) and NewReno partial ACKs (RFC 6582). With SACK: the scoreboard (RFC 6675,
:mod:`.sack`) and RACK's time-based loss detection and tail loss probes (RFC 8985,
:mod:`.rack`), as Linux does. When every retransmission of a recovery comes back
D-SACKed, the window cut is undone (RFC 2883 5).
"""

from __future__ import annotations

from ...wire import tcp as wtcp
from . import seq as S
from .seq import Seq
from .tcb import CLOSE_WAIT, CLOSING, ESTABLISHED, FIN_WAIT_1, LAST_ACK, Tcb

WORST_DELAYED_ACK = 0.2  # RFC 8985 7.2 WCDelAckT
MAX_UNDO_RANGES = 256
MIN_PTO = 0.01  # Linux's floor: a probe never beats a LAN's ACK clock


class RecoveryMixin(Tcb):
    __slots__ = ()

    def _duplicate_ack(self, seg: wtcp.TcpSegment, now: float) -> None:
        """RFC 5681 3.2 fast retransmit, RFC 6582 NewReno recovery."""
        self.dupacks += 1
        self.counters.incr("dupacks_received")
        if self.in_recovery:
            if self.sack_ok:
                self._sack_recovery(now)
            else:
                self._transmit(now, extra=self.dupacks * self.mss)  # NewReno inflation
            return
        if self.dupacks >= 3 and not (self.sack_ok and self.rack.reordering_seen):
            # Once reordering was seen, RACK's timer decides instead (RFC 8985 6).
            self._enter_recovery(now)
        else:
            # RFC 3042 limited transmit: new data on the first two duplicate ACKs.
            self._transmit(now, extra=self.dupacks * self.mss)

    def _enter_recovery(self, now: float) -> None:
        """Fast retransmit (RFC 5681 3.2) and recovery (RFC 6675 with SACK, else RFC 6582)."""
        # RFC 6582 3.2 step 1: a loss in a window already recovered does not lower the
        # congestion window again. Without SACK, its duplicate ACKs are not trusted
        # either; with RACK the loss is certain, so it is repaired all the same.
        new_episode = S.gt(self.snd_una, self.recover) or self.recover == self.iss
        if not new_episode and not self.sack_ok:
            return
        flight = S.diff(self.snd_max, self.snd_una)
        self.in_recovery = True
        self.recover = self.snd_max
        self.rexmit_high = self.snd_una
        if new_episode:
            self.prior_cwnd, self.prior_ssthresh = self.cc.cwnd, self.cc.ssthresh
            self.undo_active = True
            self.undo_retrans = 0
            self.undo_ranges = []
            self.cc.on_loss(flight, now)
            self.counters.incr("fast_recoveries")
        else:
            self.counters.incr("recoveries_same_window")
        self.fast_retransmits += 1
        self.pto_at = None
        if self.sack_ok:
            first = self.rack.first()
            if self.rack.first_lost() is None and first is not None:
                # Duplicate ACKs alone (RFC 6675 IsLost): the first segment is lost.
                self.rack.mark_lost(first)
            self._sack_recovery(now, force=True)
        else:
            # RFC 5681 3.2 step 2: retransmit the first unacknowledged segment.
            self._retransmit_first(now)

    def _rack_after_ack(self, ack: Seq, now: float) -> None:
        """RFC 8985 6.2-6.3 and 7: update RACK, detect losses, re-arm the probe timer."""
        rack = self.rack
        rack.on_ack(self.snd_una, self.sb, now)
        if self.tlp_end is not None and S.ge(ack, self.tlp_end):
            self.tlp_end = None  # the probe (or what it probed for) was acknowledged
        self.rack_timer_at = rack.detect_loss(now, self.in_recovery, self.rtt.srtt)
        if rack.first_lost() is not None:
            if not self.in_recovery:
                self._enter_recovery(now)
            else:
                self._sack_recovery(now)
        if S.lt(self.snd_una, self.snd_max) and not self.in_recovery:
            self._arm_pto(now)
        elif self.snd_una == self.snd_max:
            self.pto_at = None

    def _arm_pto(self, now: float) -> None:
        """RFC 8985 7.2: a probe timeout of two SRTTs (plus the worst delayed ACK when a
        single segment is out), never later than the RTO."""
        # Not after a timeout until new data is acknowledged (RFC 8985 7.2: no probes in
        # loss recovery; Linux probes only in its Open state).
        if (
            self.in_recovery
            or self.retransmits
            or self.tlp_end is not None
            or self.state not in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, LAST_ACK, CLOSING)
        ):
            return
        flight = S.diff(self.snd_max, self.snd_una)
        if flight <= 0:
            return
        srtt = self.rtt.srtt
        pto = 2 * srtt if srtt is not None else 1.0
        if flight <= self.mss:
            pto += WORST_DELAYED_ACK
        pto = max(pto, MIN_PTO)
        deadline = now + pto
        if self.rto_at is not None and deadline >= self.rto_at:
            self.pto_at = None  # the RTO comes first anyway
            return
        self.pto_at = deadline

    def _on_pto(self, now: float) -> None:
        """RFC 8985 7.3: send one new segment if possible, else resend the last one."""
        if self.in_recovery or self.snd_una == self.snd_max:
            return
        self.tlp_probes += 1
        self.counters.incr("tlp_probes")
        sent = False
        offset = self._buffer_offset(self.snd_nxt)
        if len(self.sndbuf) - offset > 0 and self.snd_wnd > S.diff(self.snd_nxt, self.snd_una):
            sent = self._send_data(now, self.mss, limit=1)
        if not sent:
            last = self.rack.last()
            if last is not None:
                offset = self._buffer_offset(last.start)
                length = min(last.length, self._payload_room(), len(self.sndbuf) - offset)
                if length > 0 and offset >= 0:
                    self._emit(now, last.start, 0, wtcp.ACK, self.sndbuf[offset : offset + length])
                    self.rack.on_send(last.start, S.add(last.start, length), now)
                    self.retransmitted_segments += 1
                    sent = True
            if not sent:
                self._retransmit_first(now)  # e.g. only our FIN is outstanding
        self.tlp_end = self.snd_max
        self.pto_at = None
        self._arm_rto(now, restart=True)

    def _dsack_undo(self, blocks: list[tuple[Seq, Seq]], now: float) -> None:
        """A D-SACK for data this recovery resent says that retransmission was not
        needed; when none was, restore the window the recovery cut (RFC 2883 5, RFC 4015's
        response). D-SACKs for duplicates the network made are not counted."""
        if not self.undo_active:
            return
        for start, end in blocks:
            if any(
                S.le(r_start, start) and S.le(end, r_end) for r_start, r_end in self.undo_ranges
            ):
                self.undo_retrans -= 1
        if self.undo_retrans <= 0:
            self.undo_active = False
            self.cc.undo(self.prior_cwnd, self.prior_ssthresh)
            self.undone += 1
            self.counters.incr("spurious_recoveries_undone")

    def _pipe(self) -> int:
        """RFC 6675 2 "pipe": bytes still in the network during recovery."""
        if self.sack_ok:
            return self.rack.pipe()
        outstanding = S.diff(self.snd_max, self.snd_una) - self.sb.sacked_bytes()
        lost = self.sb.hole_bytes_from(S.max_seq(self.rexmit_high, self.snd_una))
        return max(0, outstanding - lost)

    def _sack_recovery(self, now: float, force: bool = False) -> None:
        """RFC 6675 5 with RACK's losses (RFC 8985 6.3): resend the lost segments, as
        "pipe" allows, then new data. ``force`` sends the first one regardless
        (RFC 6675 5 step 4.2)."""
        while force or self._pipe() + self.mss <= self.cc.cwnd:
            seg = self.rack.first_lost()
            if seg is None:
                break
            # A record can be partly acknowledged already (the peer's ACK fell inside
            # it): resend from snd_una then.
            start = S.max_seq(seg.start, self.snd_una)
            offset = self._buffer_offset(start)
            length = min(S.diff(seg.end, start), self._payload_room(), len(self.sndbuf) - offset)
            if length <= 0 or offset < 0:
                self.rack.clear()  # the record disagrees with the buffer: start afresh
                break
            self._emit(now, start, 0, wtcp.ACK, self.sndbuf[offset : offset + length])
            self.rack.on_send(start, S.add(start, length), now)
            self.undo_retrans += 1
            if len(self.undo_ranges) < MAX_UNDO_RANGES:
                self.undo_ranges.append((start, S.add(start, length)))
            else:
                self.undo_active = False  # too much resent to keep track: no undo
            self.retransmitted_segments += 1
            self.counters.incr("sack_retransmits")
            self.rtt_seq = None
            force = False
            if self.rto_at is None:
                self._arm_rto(now)
        self._transmit(now)

    def _retransmit_first(self, now: float) -> None:
        """Resend one segment from snd_una."""
        length = min(self._payload_room(), len(self.sndbuf))
        if length <= 0:
            if self.fin_sent:
                self._emit(now, S.add(self.snd_max, -1), 0, wtcp.FIN | wtcp.ACK)
            return
        offset = self._buffer_offset(self.snd_una)
        fin = self.fin_sent and offset + length == len(self.sndbuf)
        payload = self.sndbuf[offset : offset + length]
        self._emit(now, self.snd_una, 0, wtcp.ACK | (wtcp.FIN if fin else 0), payload)
        self.retransmitted_segments += 1
        self.rtt_seq = None
        self._arm_rto(now, restart=True)
