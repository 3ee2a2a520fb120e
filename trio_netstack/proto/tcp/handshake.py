"""Opening a connection: the SYN exchange and option negotiation.

RFC 9293 3.5 and 3.10.7.3 (SYN-SENT, including simultaneous open), options from RFC 9293
3.7.1 (MSS, 536 when the peer sends none), RFC 7323 (window scaling, timestamps: each is
used only when both SYNs carry it) and RFC 2018 (SACK-permitted). The passive side starts
in :meth:`TcpConnection.accept_syn`, called by the demultiplexer's listener.
"""

from __future__ import annotations

import errno

from ...wire import tcp as wtcp
from . import seq as S
from .congestion import make_congestion_control
from .isn import tsval
from .rcvbuf import ReceiveQueue
from .seq import Seq
from .tcb import ESTABLISHED, SYN_RECEIVED, SYN_SENT, TS_OPTION_LEN, Tcb


class HandshakeMixin(Tcb):
    __slots__ = ()

    def _take_syn(self, syn: wtcp.TcpSegment, now: float) -> None:
        """Record the peer's ISN and negotiate options (RFC 9293 3.7.1, 7323, 2018)."""
        opts = syn.options
        self.irs = Seq(syn.seq)
        self.rcv = ReceiveQueue(S.add(self.irs, 1), self.config.max_ooo_ranges)
        # What our SYN or SYN-ACK offers: an unscaled window (RFC 7323 2.2).
        self.rcv_adv = S.add(self.rcv.rcv_nxt, min(self.config.receive_buffer, 0xFFFF))
        self.last_ack_sent = self.rcv.rcv_nxt
        self.snd_wnd = syn.window  # never scaled in a SYN (RFC 7323 2.2)
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = Seq(syn.seq)
        if opts.mss:
            self.peer_mss = opts.mss
        if self.config.window_scaling and opts.wscale is not None:
            self.snd_wscale = opts.wscale
        else:
            self.rcv_wscale = 0  # RFC 7323 2.2: scaling only when both sides offer it
            self.snd_wscale = 0
        self.sack_ok = self.config.sack and opts.sack_permitted
        if self.config.timestamps and opts.timestamp is not None:
            self.ts_ok = True
            self.ts_recent = opts.timestamp[0]
            self.ts_recent_at = now
        self._update_mss()

    def _update_mss(self) -> None:
        mss = min(self.peer_mss, self.local_mss)
        if self.ts_ok:
            mss -= TS_OPTION_LEN
        self.mss = max(mss, 64)
        if self.bytes_sent == 0:
            # RFC 6928 / RFC 5681 3.1: the initial window is counted in the SMSS the
            # handshake settled, not the 536 assumed before it.
            self.cc = make_congestion_control(self.config.congestion, self.mss)
        else:
            self.cc.set_mss(self.mss)

    def _on_syn_sent(self, seg: wtcp.TcpSegment, now: float) -> None:
        flags = seg.flags
        ack = Seq(seg.ack)
        # RFC 9293 3.10.7.3 first: an ACK that does not cover our SYN is unacceptable.
        if flags & wtcp.ACK and (S.le(ack, self.iss) or S.gt(ack, self.snd_max)):
            if not flags & wtcp.RST:
                self._emit(now, ack, 0, wtcp.RST, with_ack=False)
            self.counters.incr("bad_ack_syn_sent")
            return
        if flags & wtcp.RST:
            if flags & wtcp.ACK:  # RFC 5961 3.2: only a RST that acknowledges our SYN
                self._enter_closed(ConnectionRefusedError(errno.ECONNREFUSED, "connection refused"))
            return
        if not flags & wtcp.SYN:
            return
        self._take_syn(seg, now)
        if flags & wtcp.ACK:
            self._ack_advanced(ack, seg, now)
            self.state = ESTABLISHED
            self._set_window(seg)
            self.counters.incr("active_opens")
            self._schedule_ack(now, immediate=True)
            self._process_text(seg, now, skip_syn=True)
            self._transmit(now)
        else:
            # Simultaneous open (RFC 9293 3.5 figure 8): answer SYN with SYN-ACK.
            self.state = SYN_RECEIVED
            self._send_syn(now, ack=True)
            self.counters.incr("simultaneous_opens")

    def _offer_options(self, options: dict[str, object], now: float) -> None:
        """The options of our SYN or SYN-ACK (RFC 9293 3.7.1, RFC 7323 2.2 and 3.2, RFC 2018
        2): a SYN offers everything configured; a SYN-ACK only what the peer's SYN offered
        (scaling, SACK-permitted and timestamps are used only when both ends send them)."""
        options["mss"] = self.local_mss
        if self.config.window_scaling and (
            self.state is SYN_SENT or self.snd_wscale or self.rcv_wscale
        ):
            options["wscale"] = self.rcv_wscale
        if self.config.sack and (self.state is SYN_SENT or self.sack_ok):
            options["sack_permitted"] = True
        if self.config.timestamps and (self.state is SYN_SENT or self.ts_ok):
            options["timestamp"] = (tsval(now, self.ts_offset), self.ts_recent)

    def _send_syn(self, now: float, *, ack: bool) -> None:
        flags = wtcp.SYN | (wtcp.ACK if ack else 0)
        self._emit(now, self.iss, 0, flags, with_ack=ack, syn_options=True)
