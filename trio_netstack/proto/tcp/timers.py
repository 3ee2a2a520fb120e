"""Timers: retransmission (RFC 6298), SYN retries, user timeout (RFC 5482), keepalive
(RFC 1122 4.2.3.6).

Each purpose keeps one absolute deadline on the TCB (``rto_at``, ``persist_at``,
``delack_at``, ``keepalive_at``, ``time_wait_at``, ``rack_timer_at``, ``pto_at``);
``TcpConnection.get_timer`` returns the earliest and ``handle_timer`` runs what is due.
The persist timer lives with the sender, the probe timeout with loss recovery.
"""

from __future__ import annotations

import errno

from ...wire import tcp as wtcp
from . import seq as S
from .tcb import SYN_RECEIVED, SYN_SENT, SYNCHRONIZED, TIME_WAIT, Tcb


class TimersMixin(Tcb):
    __slots__ = ()

    def _arm_rto(self, now: float, restart: bool = False) -> None:
        if restart or self.rto_at is None:
            deadline = now + self.rtt.rto
            limit = self.config.user_timeout
            if limit is not None and S.lt(self.snd_una, self.snd_max):
                # Fail at the user timeout itself, not at the next backed-off RTO after
                # it (Linux's tcp_clamp_rto_to_user_timeout).
                deadline = min(deadline, self.last_progress + limit)
            self.rto_at = deadline

    def _arm_keepalive(self, now: float) -> None:
        ka = self.config.keepalive
        if ka is not None and self.state in SYNCHRONIZED and self.state is not TIME_WAIT:
            self.keepalive_at = now + (ka.idle if self.keepalive_probes == 0 else ka.interval)

    def _timed_out(self) -> OSError:
        if self.soft_error is not None:
            return self.soft_error
        return TimeoutError(errno.ETIMEDOUT, "connection timed out")

    def _on_rto(self, now: float) -> None:
        cfg = self.config
        self.timeouts += 1
        self.retransmits += 1
        self.counters.incr("rto_timeouts")
        self.rtt.on_timeout()
        if self.state is SYN_SENT:
            if self.retransmits > cfg.syn_retries:
                self._enter_closed(self._timed_out())
                return
            self._send_syn(now, ack=False)
            self.retransmitted_segments += 1
            self._arm_rto(now)
            return
        if self.state is SYN_RECEIVED:
            if self.retransmits > cfg.synack_retries:
                self._enter_closed(self._timed_out())
                return
            self._send_syn(now, ack=True)
            self.retransmitted_segments += 1
            self._arm_rto(now)
            return
        if self.retransmits > cfg.max_retransmits or (
            cfg.user_timeout is not None and now >= self.last_progress + cfg.user_timeout
        ):
            self._enter_closed(self._timed_out())
            return
        # RFC 5681 3.1 / RFC 6298 5.4-5.6: collapse the window and go back to snd_una.
        flight = S.diff(self.snd_max, self.snd_una)
        self.cc.on_rto(flight, now)
        self.sb.clear()  # the receiver may renege (RFC 2018 8): resend it all
        self.undo_active = False
        self.rack.clear()
        self.rack_timer_at = None
        self.pto_at = None
        self.tlp_end = None
        self.in_recovery = False
        self.recover = self.snd_max
        self.dupacks = 0
        self.rtt_seq = None
        self.snd_nxt = self.snd_una
        if self.fin_sent and len(self.sndbuf) == 0:
            self.fin_sent = False  # resend the FIN itself
        self._arm_rto(now, restart=True)
        self._transmit(now)
        if self.rto_at is None and S.lt(self.snd_una, self.snd_max):
            self._arm_rto(now)

    def _on_keepalive(self, now: float) -> None:
        ka = self.config.keepalive
        if ka is None or self.state not in SYNCHRONIZED:
            return
        if self.keepalive_probes >= ka.count:
            self._enter_closed(self._timed_out())
            return
        self.keepalive_probes += 1
        self.counters.incr("keepalive_probes")
        self._emit(now, S.add(self.snd_una, -1), 0, wtcp.ACK)
        self.keepalive_at = now + ka.interval
