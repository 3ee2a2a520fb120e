"""The receiving half: data and FIN into the receive queue, the window we offer, and
when to acknowledge.

RFC 9293 3.10.7.4 "seventh" and "eighth". The advertised window is the free receive
buffer, moved only by at least min(buffer/2, MSS) and never shrunk (receiver SWS
avoidance, RFC 9293 3.8.6.2.2). ACKs are delayed (RFC 9293 3.8.6.3, RFC 5681 4.2: every
second full segment at once, else after ``TcpConfig.delayed_ack``); out-of-order data,
duplicates and filled holes are acknowledged at once; in-order data of one received batch
is acknowledged once at its end (stretch ACKs, see ``TcpConnection.on_segments``).
"""

from __future__ import annotations

from ...wire import tcp as wtcp
from . import seq as S
from .seq import Seq
from .tcb import CLOSE_WAIT, CLOSING, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, LAST_ACK, RECEIVING, Tcb

# A batch's in-order data is acknowledged at least every this many bytes (GRO's 64 KiB).
STRETCH_ACK_LIMIT = 65536


class ReceiverMixin(Tcb):
    __slots__ = ()

    def _process_text(self, seg: wtcp.TcpSegment, now: float, skip_syn: bool = False) -> None:
        """RFC 9293 3.10.7.4 "seventh" and "eighth": data and FIN."""
        seg_seq = Seq(seg.seq)
        payload = seg.payload
        if seg.flags & wtcp.SYN:
            seg_seq = S.add(seg_seq, 1)
        has_fin = bool(seg.flags & wtcp.FIN)
        if self.state not in RECEIVING:
            if payload and self.state in (CLOSE_WAIT, CLOSING, LAST_ACK):
                self.counters.incr("data_after_fin")
            if has_fin and self.fin_received:
                self._schedule_ack(now, immediate=True)  # a retransmitted FIN
            return
        if payload and self.receive_closed and S.gt(S.add(seg_seq, len(payload)), self.rcv.rcv_nxt):
            # RFC 1122 4.2.2.13: new data after a full close is lost: tell the peer.
            self.counters.incr("data_after_close_reset")
            self._emit(now, self.snd_nxt, 0, wtcp.RST)
            self._enter_closed(None)
            return
        if payload:
            # Trim to the right edge of the window we offered.
            room = S.diff(self.rcv_adv, seg_seq)
            if room < len(payload):
                payload = payload[: max(room, 0)]
                has_fin = False
                self.counters.incr("trimmed_beyond_window")
            before = self.rcv.rcv_nxt
            newly, out_of_order = self.rcv.add(seg_seq, payload)
            self.bytes_received += newly
            if out_of_order:
                self.counters.incr("out_of_order_segments")
                self._schedule_ack(now, immediate=True)  # RFC 5681 4.2: ack at once
            elif newly == 0:
                self.counters.incr("duplicate_segments")
                self.dsack = (seg_seq, S.add(seg_seq, len(payload)))  # RFC 2883
                self._schedule_ack(now, immediate=True)
            else:
                filled_hole = self.rcv.rcv_nxt != S.add(before, len(payload))
                self.unacked_segments += 1
                unacked = S.diff(self.rcv.rcv_nxt, self.last_ack_sent)
                due = self.unacked_segments >= 2 or unacked >= 2 * self.local_mss
                if due and self.batching and not filled_hole and unacked < STRETCH_ACK_LIMIT:
                    self.ack_at_end = True  # one ACK for the batch (see on_segments)
                else:
                    self._schedule_ack(now, immediate=due or filled_hole)
        if has_fin:
            self.fin_seq = S.add(seg_seq, len(payload))
        if self.fin_seq is not None and self.fin_seq == self.rcv.rcv_nxt and not self.fin_received:
            self.fin_received = True
            self.rcv.rcv_nxt = S.add(self.rcv.rcv_nxt, 1)
            self.counters.incr("fin_received")
            self._schedule_ack(now, immediate=True)
            if self.state is ESTABLISHED:
                self.state = CLOSE_WAIT
            elif self.state is FIN_WAIT_1:
                if self.fin_sent and self.snd_una == self.snd_max:
                    self._enter_time_wait(now)
                else:
                    self.state = CLOSING  # simultaneous close (RFC 9293 figure 13)
            elif self.state is FIN_WAIT_2:
                self._enter_time_wait(now)

    def _schedule_ack(self, now: float, *, immediate: bool = False) -> None:
        if immediate:
            self.ack_now = True
        elif self.delack_at is None:
            self.delack_at = now + self.config.delayed_ack

    def _maybe_window_update(self, now: float) -> None:
        """After the application read: tell the peer when the window opened a lot."""
        if self.state not in RECEIVING:
            return
        rcv_nxt = self.rcv.rcv_nxt
        offered = max(0, S.diff(self.rcv_adv, rcv_nxt))
        free = self.config.receive_buffer - len(self.rcv)
        if free - offered >= max(2 * self.local_mss, self.config.receive_buffer // 4) or (
            offered < self.local_mss <= free
        ):
            self.counters.incr("window_updates")
            self.ack_now = True
            self._transmit(now)

    def _advertise(self) -> int:
        """The window field to send, with receiver SWS avoidance (RFC 9293 3.8.6.2.2).

        The right edge only moves when the space freed reaches min(buffer/2, MSS), and
        never moves left; the scaled field is rounded up so that scaling cannot shrink
        what we offered (as Linux's tcp_select_window does).
        """
        rcv_nxt = self.rcv.rcv_nxt
        shift = self.rcv_wscale
        free = max(0, self.config.receive_buffer - len(self.rcv))
        offered = max(0, S.diff(self.rcv_adv, rcv_nxt))
        threshold = min(self.config.receive_buffer // 2, self.local_mss)
        window = free if free - offered >= threshold else offered
        field = min((window + (1 << shift) - 1) >> shift, 0xFFFF)
        right = S.add(rcv_nxt, field << shift)
        if S.gt(right, self.rcv_adv):
            self.rcv_adv = right
        return field
