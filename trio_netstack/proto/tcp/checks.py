"""Whether a segment in a synchronized state is believed: RFC 9293 3.10.7.4 "first" to
"fifth" (acceptability against our window, RST, SYN and ACK bits) hardened as RFC 5961
asks, with PAWS (RFC 7323 5) before anything else, and TIME-WAIT's own rules (RFC 1337).

Every unacceptable segment is answered with at most one ACK per
``INVALID_ACK_INTERVAL`` (Linux's ``tcp_invalid_ratelimit``), so two confused ends cannot
exchange ACKs forever; challenge ACKs also pass the stack-wide bucket the demultiplexer
injects (RFC 5961 7).
"""

from __future__ import annotations

import errno

from ...wire import tcp as wtcp
from . import seq as S
from .seq import Seq
from .tcb import CLOSED, CLOSING, ESTABLISHED, LAST_ACK, SYN_RECEIVED, Tcb

INVALID_ACK_INTERVAL = 0.5  # seconds between ACKs answering unacceptable segments
PAWS_IDLE = 24 * 24 * 3600.0  # RFC 7323 5.5: ts_recent older than 24 days is invalid


class ChecksMixin(Tcb):
    __slots__ = ()

    def _on_synchronized(self, seg: wtcp.TcpSegment, now: float) -> None:
        flags = seg.flags
        counters = self.counters
        # RFC 7323 5.3: PAWS, before anything else.
        if self.ts_ok and seg.options.timestamp is not None and not flags & wtcp.RST:
            tsval = seg.options.timestamp[0]
            if S.lt(Seq(tsval), Seq(self.ts_recent)) and now - self.ts_recent_at < PAWS_IDLE:
                counters.incr("paws_rejected")
                self._answer_unacceptable(seg, now)
                return
        if not self._acceptable(seg):
            counters.incr("out_of_window")
            if not flags & wtcp.RST:
                self._answer_unacceptable(seg, now)
            return
        if flags & wtcp.RST:
            # RFC 5961 3.2: reset only on an exact match, else a challenge ACK.
            if Seq(seg.seq) == self.rcv.rcv_nxt:
                counters.incr("rst_received")
                if self.state is SYN_RECEIVED and self.error is None:
                    self._enter_closed(
                        ConnectionRefusedError(errno.ECONNREFUSED, "connection refused")
                    )
                elif self.state in (CLOSING, LAST_ACK):
                    self._enter_closed(None)
                else:
                    self._enter_closed(
                        ConnectionResetError(errno.ECONNRESET, "connection reset by peer")
                    )
            else:
                self._challenge_ack(now)
            return
        if flags & wtcp.SYN:
            # RFC 5961 4.2: a SYN in a synchronized state earns a challenge ACK.
            if self.state is SYN_RECEIVED and Seq(seg.seq) == self.irs:
                self._send_syn(now, ack=True)  # their SYN again: our SYN-ACK was lost
                return
            self._challenge_ack(now)
            return
        if not flags & wtcp.ACK:
            counters.incr("no_ack_dropped")
            return
        self._update_ts_recent(seg, now)
        ack = Seq(seg.ack)
        if self.state is SYN_RECEIVED:
            if S.lt(self.snd_una, ack) and S.le(ack, self.snd_max):
                self.state = ESTABLISHED
                self._set_window(seg)
                self.counters.incr("passive_opens")
            else:
                self._emit(now, ack, 0, wtcp.RST, with_ack=False)
                return
        if not self._process_ack(seg, now):
            return
        if self.state is CLOSED:
            return
        self._process_text(seg, now)
        self._transmit(now)

    def _acceptable(self, seg: wtcp.TcpSegment) -> bool:
        """RFC 9293 3.10.7.4 table: does the segment fall in our receive window?"""
        wnd = max(0, S.diff(self.rcv_adv, self.rcv.rcv_nxt))
        seg_seq = Seq(seg.seq)
        n = seg.seg_len
        rcv_nxt = self.rcv.rcv_nxt
        if n == 0:
            if wnd == 0:
                return seg_seq == rcv_nxt
            return S.in_window(seg_seq, rcv_nxt, wnd)
        if wnd == 0:
            return False
        return S.in_window(seg_seq, rcv_nxt, wnd) or S.in_window(
            S.add(seg_seq, n - 1), rcv_nxt, wnd
        )

    def _update_ts_recent(self, seg: wtcp.TcpSegment, now: float) -> None:
        # RFC 7323 4.3: remember TSval of the segment that covers last_ack_sent.
        ts = seg.options.timestamp
        if (
            self.ts_ok
            and ts is not None
            and S.le(Seq(seg.seq), self.last_ack_sent)
            and (S.ge(Seq(ts[0]), Seq(self.ts_recent)) or now - self.ts_recent_at >= PAWS_IDLE)
        ):
            self.ts_recent = ts[0]
            self.ts_recent_at = now

    def _answer_unacceptable(self, seg: wtcp.TcpSegment, now: float) -> None:
        """An old or out-of-window segment: data gets an immediate ACK with a D-SACK
        (RFC 2883) so the sender learns its retransmission was spurious (data segments are
        not part of ACK loops, so Linux does not rate-limit these); anything else gets a
        rate-limited ACK."""
        if len(seg.payload) and not seg.flags & wtcp.SYN:
            start = Seq(seg.seq)
            if S.lt(start, self.rcv.rcv_nxt):
                self.dsack = (start, S.min_seq(S.add(start, len(seg.payload)), self.rcv.rcv_nxt))
            self._schedule_ack(now, immediate=True)
            self._transmit(now)
        else:
            self._ack_invalid(now)

    def _ack_invalid(self, now: float) -> None:
        """RFC 9293 3.10.7.4: answer an unacceptable segment with an ACK, but at most
        one per ``INVALID_ACK_INTERVAL`` (Linux's tcp_invalid_ratelimit), so that two
        confused ends can never ping-pong ACKs forever."""
        if now - self.last_invalid_ack < INVALID_ACK_INTERVAL:
            self.counters.incr("invalid_acks_suppressed")
            return
        self.last_invalid_ack = now
        self._schedule_ack(now, immediate=True)
        self._transmit(now)

    def _challenge_ack(self, now: float) -> None:
        if self._challenge_allowed(now):
            self.counters.incr("challenge_acks")
            self._schedule_ack(now, immediate=True)
            self._transmit(now)
        else:
            self.counters.incr("challenge_acks_suppressed")

    def _on_time_wait(self, seg: wtcp.TcpSegment, now: float) -> None:
        """TIME-WAIT: re-ACK a retransmitted FIN and restart 2*MSL (RFC 9293 3.10.7.4)."""
        if seg.flags & wtcp.RST:
            self.counters.incr("rst_in_time_wait_ignored")  # RFC 1337
            return
        if seg.flags & wtcp.FIN:
            self.time_wait_at = now + 2 * self.config.msl
        self._schedule_ack(now, immediate=True)
        self._send_ack(now)
