"""The sending half: what goes out, and what the peer's ACKs say about it.

Sending. The send buffer holds every byte from ``snd_una`` on: acknowledged bytes are
deleted from its front (a bytearray does that in O(1) amortised), so offset ``i`` in the
buffer is sequence number ``snd_una + i`` (plus one while our SYN is unacknowledged).
:meth:`_transmit` sends what the peer's window, the congestion window, sender SWS
avoidance (RFC 9293 3.8.6.2.1) and Nagle's algorithm (RFC 896) allow, as super-segments
when the device cuts them (TSO); a zero window arms the persist timer (RFC 9293 3.8.6.1).
After a retransmission timeout ``snd_nxt`` is pulled back to ``snd_una`` and the data is
sent again, while ``snd_max`` remembers the highest sequence number ever sent so that
ACKs for the original transmissions stay acceptable.

Acknowledgments (RFC 9293 3.10.7.4 "fifth", RFC 5961 5.2): the send window, RTT samples
(RFC 7323 4.1 from timestamps, else Karn's algorithm, RFC 6298 3), the congestion
controller, and the hand-off to loss recovery (:mod:`.recovery`).
"""

from __future__ import annotations

from ...wire import tcp as wtcp
from . import seq as S
from .isn import tsval
from .seq import Seq
from .tcb import (
    CLOSED,
    CLOSING,
    DATA_OUT,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    LISTEN,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    TS_OPTION_LEN,
    Tcb,
)


class SenderMixin(Tcb):
    __slots__ = ()

    def _transmit(self, now: float, extra: int = 0) -> None:
        """Send new data, FIN and pending ACKs as windows and Nagle allow."""
        state = self.state
        if state in (SYN_SENT, SYN_RECEIVED, CLOSED, LISTEN, TIME_WAIT):
            if self.ack_now and state in (TIME_WAIT, SYN_RECEIVED):
                self._emit(now, self.snd_max, 0, wtcp.ACK)
            self.ack_now = False
            return
        sent_any = False
        if state in DATA_OUT:
            sent_any = self._send_data(now, extra)
        if self.ack_now and not sent_any:
            self._emit(now, self.snd_max, 0, wtcp.ACK)
        self.ack_now = False

    def _send_data(self, now: float, extra: int, limit: int | None = None) -> bool:
        if not self.sndbuf and not self.fin_queued:
            return False  # nothing queued at all (every ACK of a request/response lands here)
        sent = False
        mss = self._payload_room()
        if self.snd_una == self.snd_max and now - self.last_send > self.rtt.rto:
            # RFC 5681 4.1: restart the window after an idle period.
            self.cc.on_idle_restart(now - self.last_send, self.rtt.rto, now)
        while True:
            offset = self._buffer_offset(self.snd_nxt)
            unsent = len(self.sndbuf) - offset
            flight = (
                self._pipe()
                if self.in_recovery and self.sack_ok
                else S.diff(self.snd_nxt, self.snd_una)
            )
            wnd = min(self.snd_wnd, self.cc.cwnd + extra)
            usable = wnd - flight
            fin_due = self.fin_queued and not (self.fin_sent and S.ge(self.snd_nxt, self.snd_max))
            if unsent <= 0:
                if fin_due and unsent == 0:  # a lone FIN, sent whatever the window
                    self._emit(now, self.snd_nxt, 0, wtcp.FIN | wtcp.ACK)
                    self._advance_nxt(1, now)
                    self.fin_sent = True
                    sent = True
                break
            if self.snd_wnd == 0 or usable <= 0:
                if self.snd_wnd == 0 and flight == 0 and self.persist_at is None:
                    self._arm_persist(now)
                break
            length = min(mss, unsent, usable)
            gso = self._gso_room(mss)
            if gso and not S.lt(self.snd_nxt, self.snd_max) and unsent > mss and usable > mss:
                # A super-segment of whole MSS pieces, cut by the device (TSO).
                length = min(gso, unsent, usable) // mss * mss
            if length < mss and length < unsent and length < self.max_snd_wnd // 2 and flight:
                # The window allows only part of a segment: sender SWS avoidance
                # (RFC 9293 3.8.6.2.1) waits unless that is half the largest window seen.
                break
            if length < mss and flight > 0 and not self.nodelay and not fin_due:
                break  # Nagle (RFC 896, RFC 9293 3.7.4): one small segment in flight
            last = length == unsent
            fin = last and self.fin_queued
            flags = wtcp.ACK | (wtcp.PSH if last else 0) | (wtcp.FIN if fin else 0)
            payload = self.sndbuf[offset : offset + length]
            retrans = S.lt(self.snd_nxt, self.snd_max)
            if retrans:
                self.retransmitted_segments += 1
            elif self.rtt_seq is None and not self.ts_ok:
                self.rtt_seq = S.add(self.snd_nxt, length)
                self.rtt_sent = now
            self._emit(now, self.snd_nxt, 0, flags, payload)
            if length > mss:
                self.segments_offloaded += 1
            if self.sack_ok:
                # One record per wire segment, so SACK and RACK see what the device sent.
                for piece in range(0, length, mss):
                    self.rack.on_send(
                        S.add(self.snd_nxt, piece),
                        S.add(self.snd_nxt, min(piece + mss, length)),
                        now,
                    )
            self._advance_nxt(length + (1 if fin else 0), now)
            if fin:
                self.fin_sent = True
            sent = True
            if limit is not None:
                limit -= 1
                if limit <= 0:
                    break
        if sent and self.sack_ok:
            self._arm_pto(now)
        return sent

    def _advance_nxt(self, n: int, now: float) -> None:
        if self.snd_una == self.snd_max:
            # The user timeout (RFC 5482) counts from when data became outstanding.
            self.last_progress = now
        self.snd_nxt = S.add(self.snd_nxt, n)
        if S.gt(self.snd_nxt, self.snd_max):
            self.snd_max = self.snd_nxt
        self.last_send = now
        if self.rto_at is None:
            self._arm_rto(now)
        self.persist_at = None

    def _gso_room(self, mss: int) -> int:
        """Bytes a super-segment may carry: only when the device cuts at exactly our
        segment size (the MSS the peer allows fills the link MTU with these options)."""
        if not self.gso_limit:
            return 0
        header = 20 + 20 + (TS_OPTION_LEN if self.ts_ok else 0)
        if self.sack_ok and self.rcv.has_gaps:
            return 0  # SACK blocks change the header size per segment: keep it simple
        if mss + header != self.gso_mtu:
            return 0
        return self.gso_limit

    def _payload_room(self) -> int:
        """Payload bytes per segment now: the MSS less any SACK option we will carry.

        Like Linux's tcp_current_mss: SACK blocks share the 40 option bytes with the
        timestamps, and a segment must still fit the path MTU.
        """
        if not (self.sack_ok and self.rcv.has_gaps):
            return self.mss
        blocks = min(self.rcv.range_count, 3 if self.ts_ok else 4)
        return max(self.mss - 4 - 8 * blocks, 64)

    def _buffer_offset(self, at: Seq) -> int:
        """Index into sndbuf of sequence number ``at``."""
        base = S.add(self.snd_una, 1) if self.snd_una == self.iss else self.snd_una
        return S.diff(at, base)

    def _set_window(self, seg: wtcp.TcpSegment) -> None:
        # A segment carrying SYN has an unscaled window (RFC 7323 2.2).
        shift = 0 if seg.flags & wtcp.SYN else self.snd_wscale
        self.snd_wnd = seg.window << shift
        self.snd_wl1 = Seq(seg.seq)
        self.snd_wl2 = Seq(seg.ack)
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)

    def _process_ack(self, seg: wtcp.TcpSegment, now: float) -> bool:
        """RFC 9293 3.10.7.4 "fifth" with RFC 5961 5.2. Returns False to drop the segment."""
        ack = Seq(seg.ack)
        if S.gt(ack, self.snd_max):
            self.counters.incr("ack_too_new")
            self._schedule_ack(now, immediate=True)
            self._transmit(now)
            return False
        if S.lt(ack, S.add(self.snd_una, -max(self.max_snd_wnd, 1))):
            self.counters.incr("ack_too_old")
            self._challenge_ack(now)
            return False
        if (
            ack == self.snd_max
            and self.snd_una == ack
            and not self.in_recovery
            and not self.sb
            and not seg.options.sack_blocks  # a D-SACK may still undo a recovery
        ):
            # Nothing outstanding before or after (a receiver's usual segment): no SACK,
            # RACK, probe or recovery state can change, only the window.
            self.sb.newly = []
            self.pto_at = None
            self.rack_timer_at = None
            self.tlp_end = None
            self._window_from(seg, ack)
            return self._after_ack_state(now)
        old_wnd = self.snd_wnd
        self.sb.newly = []
        if self.sack_ok and (seg.options.sack_blocks or self.sb):
            una = ack if S.gt(ack, self.snd_una) else self.snd_una
            dsacks = self.sb.dsacks
            self.sb.update(una, self.snd_max, seg.options.sack_blocks)
            if self.sb.dsacks != dsacks:
                self.rack.on_dsack(now)
                self._dsack_undo(self.sb.last_dsacks, now)
        if S.gt(ack, self.snd_una):
            self._ack_advanced(ack, seg, now)
        elif (
            ack == self.snd_una
            and not len(seg.payload)
            and not seg.flags & wtcp.FIN
            and S.lt(self.snd_una, self.snd_max)
            and (seg.window << self.snd_wscale) == old_wnd
        ):
            self._duplicate_ack(seg, now)
        if (
            self.sack_ok
            and not self.in_recovery
            and not self.rack.reordering_seen
            and self.sb.sacked_bytes() >= 3 * self.mss
            and S.lt(self.snd_una, self.snd_max)
        ):
            # RFC 6675 5 (IsLost): three segments' worth SACKed above snd_una.
            self._enter_recovery(now)
        if self.sack_ok:
            self._rack_after_ack(ack, now)
        self._window_from(seg, ack)
        return self._after_ack_state(now)

    def _window_from(self, seg: wtcp.TcpSegment, ack: Seq) -> None:
        # Window update (RFC 9293 3.10.7.4): only from a segment not older than the last.
        if S.lt(self.snd_wl1, Seq(seg.seq)) or (
            self.snd_wl1 == Seq(seg.seq) and S.le(self.snd_wl2, ack)
        ):
            self._set_window(seg)
            if self.snd_wnd and self.persist_at is not None:
                self.persist_at = None
                self.persist_backoff = 0

    def _after_ack_state(self, now: float) -> bool:
        fin_acked = self.fin_sent and self.snd_una == self.snd_max
        if self.state is FIN_WAIT_1 and fin_acked:
            self.state = FIN_WAIT_2
        elif self.state is CLOSING and fin_acked:
            self._enter_time_wait(now)
        elif self.state is LAST_ACK and fin_acked:
            self._enter_closed(None)
            return False
        return True

    def _ack_advanced(self, ack: Seq, seg: wtcp.TcpSegment, now: float) -> None:
        acked = S.diff(ack, self.snd_una)
        flight_before = S.diff(self.snd_max, self.snd_una)
        syn_acked = self.snd_una == self.iss
        data_acked = acked - (1 if syn_acked else 0)
        if self.fin_sent and ack == self.snd_max:
            data_acked -= 1  # our FIN
        if data_acked > 0:
            del self.sndbuf[:data_acked]
            self.bytes_acked += data_acked
        self.snd_una = ack
        if S.lt(self.snd_nxt, ack):
            self.snd_nxt = ack  # ACK for data sent before a timeout rewound snd_nxt
        self.retransmits = 0
        self.last_progress = now
        self.rtt.reset_backoff()
        rtt = self._rtt_sample(ack, seg, now)
        if self.in_recovery:
            if S.ge(ack, self.recover):
                self.in_recovery = False  # RFC 6582 3.2 step 6: full acknowledgment
                self.cc.on_recovery_exit(now)
                self.rack.on_recovery_end()
            elif self.sack_ok:
                self._sack_recovery(now)  # RFC 6675 5 (C): keep filling holes
            else:
                # RFC 6582 3.2 step 5: a partial ACK means the next hole is lost too.
                self._retransmit_first(now)
                self.counters.incr("partial_ack_retransmits")
        elif not syn_acked:
            self.cc.on_ack(max(acked, 0), rtt, now, flight_before)
        self.dupacks = 0
        # RFC 6298 5.2/5.3: stop the timer when all is acknowledged, else restart it.
        if self.snd_una == self.snd_max:
            self.rto_at = None
        else:
            self._arm_rto(now, restart=True)

    def _rtt_sample(self, ack: Seq, seg: wtcp.TcpSegment, now: float) -> float | None:
        ts = seg.options.timestamp
        if self.ts_ok and ts is not None and ts[1]:
            # RFC 7323 4.1: TSecr echoes our clock, so the sample is exact even for
            # retransmissions.
            elapsed_ms = (tsval(now, self.ts_offset) - ts[1]) & 0xFFFFFFFF
            if elapsed_ms < 0x7FFFFFFF:
                sample = elapsed_ms / 1000.0
                self.rtt.sample(sample)
                self.rack.sample_rtt(sample)
                return sample
            return None
        if self.rtt_seq is not None and S.ge(ack, self.rtt_seq):
            # Karn's algorithm (RFC 6298 3): rtt_seq is cleared on retransmission.
            sample = now - self.rtt_sent
            self.rtt_seq = None
            self.rtt.sample(sample)
            self.rack.sample_rtt(sample)
            return sample
        return None

    def _arm_persist(self, now: float) -> None:
        # RFC 9293 3.8.6.1: probe a zero window with exponential backoff.
        delay = min(self.rtt.rto * (1 << self.persist_backoff), self.config.persist_max)
        self.persist_at = now + max(delay, self.config.rto.minimum)

    def _on_persist(self, now: float) -> None:
        if self.snd_wnd != 0 or self._buffer_offset(self.snd_nxt) >= len(self.sndbuf):
            self.persist_backoff = 0
            return
        # A zero-window probe as Linux sends it: an old sequence number with no data,
        # which any receiver answers with an ACK carrying its current window.
        self.zero_window_probes += 1
        self.counters.incr("zero_window_probes")
        self._emit(now, S.add(self.snd_una, -1), 0, wtcp.ACK)
        self.persist_backoff = min(self.persist_backoff + 1, 16)
        self._arm_persist(now)
