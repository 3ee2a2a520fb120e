"""One TCP connection: its public interface, its state and the dispatch of its inputs.

Theory of operation
-------------------
A :class:`TcpConnection` is a pure machine (RFC 9293). Its inputs are segments
(:meth:`on_segment`, :meth:`on_segments`), ICMP errors (:meth:`on_icmp_error`), the
application's calls (:meth:`app_send`, :meth:`app_receive`, :meth:`app_close`,
:meth:`app_abort`), the host's (:meth:`app_shutdown`) and time (:meth:`handle_timer`);
every input carries ``now``. Its outputs are TCP
segments, which the owner takes after each call with :meth:`take_segments`
(:attr:`has_output` says whether there are any; like aioquic's
``datagrams_to_send``), and changes of :attr:`state`, :attr:`error` and the
readable/writable conditions, which the owner inspects after each call.

This module holds what the owner calls and the state transitions; the work is done by
mixins over one set of fields (:mod:`.tcb`, which explains the arrangement):

* :mod:`.handshake` -- SYN exchange, option negotiation (MSS, window scale, SACK, timestamps);
* :mod:`.checks` -- acceptability, PAWS and RFC 5961 checks of a segment, TIME-WAIT;
* :mod:`.sender` -- sending (windows, Nagle, SWS avoidance, persist, TSO) and ACK processing;
* :mod:`.receiver` -- data and FIN, the advertised window, delayed and stretch ACKs;
* :mod:`.recovery` -- fast retransmit, SACK recovery, RACK-TLP, D-SACK undo;
* :mod:`.emit` -- building every segment we send;
* :mod:`.timers` -- retransmission timeout, keepalive.

Timers. One deadline per purpose (retransmission, persist, delayed ACK,
keepalive, TIME_WAIT, RACK, tail loss probe); :meth:`get_timer` returns the earliest,
so the owning task sleeps exactly until something is due.

Hardening. Sequence numbers only go through :mod:`.seq`; RST, SYN and ACK
checks follow RFC 5961 (challenge ACKs, rate limited through a shared bucket);
PAWS (RFC 7323 5) rejects old duplicates; every buffer is bounded.
"""

from __future__ import annotations

import errno
import math

from ...wire import icmp as wicmp
from ...wire import tcp as wtcp
from ..icmp import IcmpErrorReport, error_to_exception
from . import seq as S
from .checks import INVALID_ACK_INTERVAL, PAWS_IDLE, ChecksMixin
from .emit import EmitMixin
from .handshake import HandshakeMixin
from .receiver import STRETCH_ACK_LIMIT, ReceiverMixin
from .recovery import MAX_UNDO_RANGES, MIN_PTO, WORST_DELAYED_ACK, RecoveryMixin
from .sender import SenderMixin
from .tcb import (
    APP_SENDABLE,
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    DATA_OUT,
    DEFAULT_MSS,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    LISTEN,
    RECEIVING,
    SENDING,
    SYN_RECEIVED,
    SYN_SENT,
    SYNCHRONIZED,
    TIME_WAIT,
    TS_OPTION_LEN,
    Keepalive,
    TcpConfig,
    TcpState,
    window_shift,
)
from .timers import TimersMixin

__all__ = [
    "APP_SENDABLE",
    "CLOSED",
    "CLOSE_WAIT",
    "CLOSING",
    "DATA_OUT",
    "DEFAULT_MSS",
    "ESTABLISHED",
    "FIN_WAIT_1",
    "FIN_WAIT_2",
    "INVALID_ACK_INTERVAL",
    "LAST_ACK",
    "LISTEN",
    "MAX_UNDO_RANGES",
    "MIN_PTO",
    "PAWS_IDLE",
    "RECEIVING",
    "SENDING",
    "STRETCH_ACK_LIMIT",
    "SYNCHRONIZED",
    "SYN_RECEIVED",
    "SYN_SENT",
    "TIME_WAIT",
    "TS_OPTION_LEN",
    "WORST_DELAYED_ACK",
    "Keepalive",
    "TcpConfig",
    "TcpConnection",
    "TcpState",
    "window_shift",
]


class TcpConnection(
    HandshakeMixin,
    ChecksMixin,
    SenderMixin,
    ReceiverMixin,
    RecoveryMixin,
    EmitMixin,
    TimersMixin,
):
    """One connection (see the module's documentation); the fields are :class:`.tcb.Tcb`'s."""

    __slots__ = ()

    # ================================================================== opening

    def connect(self, now: float) -> None:
        """Active open (RFC 9293 3.10.1): send SYN, enter SYN-SENT."""
        self.state = SYN_SENT
        self.snd_nxt = S.add(self.iss, 1)
        self.snd_max = self.snd_nxt
        self._send_syn(now, ack=False)
        self._arm_rto(now)

    def accept_syn(self, syn: wtcp.TcpSegment, now: float) -> None:
        """Passive open from a listener (RFC 9293 3.10.7.2): answer with SYN-ACK."""
        self.state = SYN_RECEIVED
        self._take_syn(syn, now)
        self.snd_nxt = S.add(self.iss, 1)
        self.snd_max = self.snd_nxt
        self._send_syn(now, ack=True)
        self._arm_rto(now)

    def path_mtu_changed(self, mtu: int, now: float) -> None:
        """RFC 1191 6.4: a smaller path MTU shrinks our segments; resend what was lost."""
        new_local = mtu - 40
        if new_local >= self.local_mss:
            return
        self.local_mss = new_local
        self._update_mss()
        self.counters.incr("pmtu_lowered")
        if S.lt(self.snd_una, self.snd_max) and self.state in SYNCHRONIZED:
            self.snd_nxt = self.snd_una  # the big segments were dropped on the way
            self._transmit(now)

    # ============================================================== application

    @property
    def send_space(self) -> int:
        return max(0, self.config.send_buffer - len(self.sndbuf))

    def app_send(self, data: bytes | bytearray | memoryview, now: float) -> int:
        """Queue as much of ``data`` as fits; returns the number of bytes taken."""
        if self.fin_queued or self.state not in APP_SENDABLE:
            raise OSError(errno.EPIPE, "the connection is closed for sending")
        take = min(len(data), self.send_space)
        if take:
            self.sndbuf += data[:take]
            if self.state in SENDING:
                self._transmit(now)
        return take

    def app_receive(self, max_bytes: int, now: float) -> bytes | None:
        """Bytes for the application; ``b""`` at end of stream, None when none yet."""
        if len(self.rcv):
            data = self.rcv.read(max_bytes)
            self._maybe_window_update(now)
            return data
        if self.error is not None:
            return None  # the caller raises the error
        if self.fin_received or self.state in (CLOSED, TIME_WAIT):
            return b""
        return None

    @property
    def readable(self) -> bool:
        return bool(len(self.rcv)) or self.fin_received or self.state is CLOSED

    def app_close(self, now: float, *, full: bool = False) -> None:
        """Send FIN after the queued data (RFC 9293 3.10.4 CLOSE).

        ``full`` means the application will not read either (a socket close rather
        than a half-close): data arriving afterwards is answered with RST
        (RFC 1122 4.2.2.13), and if received data is still unread the connection is
        reset instead (RFC 2525 2.17, as Linux's tcp_close does): a FIN would tell the
        peer that everything it sent was taken.
        """
        if full and len(self.rcv) and self.error is None:
            self.app_abort(now)
            return
        self._close(now, full)

    def app_shutdown(self, now: float, accepted: bool) -> None:
        """The host is going down: end the connection as a host shutting down does.

        Connections still opening, and passive ones their listener has not taken
        (``accepted`` false), are reset with ``OSError(ENETDOWN)``; established ones
        (ESTABLISHED, CLOSE_WAIT) are closed fully with a FIN after their queued data,
        unread data or not (the owner waits, bounded, for those FINs to be
        acknowledged); the others are closing already.
        """
        if self.state in (SYN_SENT, SYN_RECEIVED) or not accepted:
            self.app_abort(now, OSError(errno.ENETDOWN, "the stack was closed"))
        elif self.state in (ESTABLISHED, CLOSE_WAIT):
            self._close(now, True)

    def _close(self, now: float, full: bool) -> None:
        # RFC 9293 3.10.4 CLOSE, state by state.
        if full:
            self.receive_closed = True
        if self.fin_queued:
            return
        if self.state in (SYN_SENT, CLOSED, LISTEN):
            self._enter_closed(None)
            return
        self.fin_queued = True
        if self.state in (ESTABLISHED, SYN_RECEIVED):
            self.state = FIN_WAIT_1
        elif self.state is CLOSE_WAIT:
            self.state = LAST_ACK
        self._transmit(now)

    def app_abort(self, now: float, error: OSError | None = None) -> None:
        """Reset the connection (RFC 9293 3.10.5 ABORT); ``error`` is what users see."""
        if self.state in SYNCHRONIZED | {SYN_RECEIVED} and self.state is not TIME_WAIT:
            self._emit(now, self.snd_nxt, 0, wtcp.RST)
        self._enter_closed(error)

    def flush(self, now: float) -> None:
        """Send whatever is allowed now (after app calls that queued data or read)."""
        self._transmit(now)

    # ================================================================== output

    @property
    def has_output(self) -> bool:
        """Whether segments wait to be taken (:meth:`take_segments`)."""
        return bool(self.out)

    def take_segments(self) -> list[bytes]:
        """Hand over the segments produced since the last call, in order: TCP segments
        with their checksums (or the pseudo-header sum for ``csum_partial``), ready to be
        IPv4 payloads from ``local_ip`` to ``remote_ip``. Call after every input."""
        out = self.out
        self.out = []
        return out

    # ==================================================================== input

    def on_segment(self, seg: wtcp.TcpSegment, now: float) -> None:
        self.segments_received += 1
        self.last_receive = now
        self.keepalive_probes = 0
        if self.state is SYN_SENT:
            self._on_syn_sent(seg, now)
        elif self.state is TIME_WAIT:
            self._on_time_wait(seg, now)
        elif self.state is not CLOSED:
            self._on_synchronized(seg, now)
        self._arm_keepalive(now)

    def on_segments(self, segments: list[wtcp.TcpSegment], now: float) -> None:
        """Feed the segments of one received batch (what one device read delivered).

        In-order data in the batch is acknowledged once, at its end (at most every
        ``STRETCH_ACK_LIMIT`` bytes), as Linux acknowledges a GRO-merged segment once:
        the every-second-segment rule (RFC 5681 4.2, RFC 9293 3.8.6.3) is applied to
        what arrived together, which spares the peer (and us) most of the ACKs of a
        bulk transfer. Out-of-order, duplicate, hole-filling and FIN segments are
        still acknowledged at once (fast retransmit and SACK depend on them).
        """
        if len(segments) == 1:
            self.on_segment(segments[0], now)
            return
        self.batching = True
        try:
            for seg in segments:
                self.on_segment(seg, now)
        finally:
            self.batching = False
        if self.ack_at_end:
            self.ack_at_end = False
            if self.state in SYNCHRONIZED:
                self.ack_now = True
                self._transmit(now)

    # =================================================================== timers

    def get_timer(self) -> float | None:
        deadline = math.inf
        for t in (
            self.rto_at,
            self.persist_at,
            self.delack_at,
            self.keepalive_at,
            self.time_wait_at,
            self.rack_timer_at,
            self.pto_at,
        ):
            if t is not None and t < deadline:
                deadline = t
        if self.ack_now:
            return -math.inf
        return None if deadline == math.inf else deadline

    def handle_timer(self, now: float) -> None:
        if self.time_wait_at is not None and now >= self.time_wait_at:
            self.time_wait_at = None
            self._enter_closed(None)
            return
        if self.rto_at is not None and now >= self.rto_at:
            self.rto_at = None
            self._on_rto(now)
        if self.state is CLOSED:
            return
        if self.rack_timer_at is not None and now >= self.rack_timer_at:
            self.rack_timer_at = self.rack.detect_loss(now, self.in_recovery, self.rtt.srtt)
            if self.rack.first_lost() is not None:
                if self.in_recovery:
                    self._sack_recovery(now)
                else:
                    self._enter_recovery(now)
        if self.pto_at is not None and now >= self.pto_at:
            self.pto_at = None
            self._on_pto(now)
        if self.persist_at is not None and now >= self.persist_at:
            self.persist_at = None
            self._on_persist(now)
        if self.delack_at is not None and now >= self.delack_at:
            self.delack_at = None
            self.ack_now = True
        if self.keepalive_at is not None and now >= self.keepalive_at:
            self.keepalive_at = None
            self._on_keepalive(now)
        if self.state is not CLOSED:
            self._transmit(now)

    # ======================================================= errors and endings

    def on_icmp_error(self, report: IcmpErrorReport, path_mtu: int | None, now: float) -> bool:
        """An ICMP error about one of our segments (the demultiplexer matched it, RFC 5927).

        "Fragmentation needed" is news of the path MTU: ``path_mtu`` is what path MTU
        discovery (RFC 1191) now makes of the path, given by the owner for such reports
        only. Any other error is kept for the user (:meth:`icmp_error`); every destination
        unreachable counts as hard, so it aborts an opening connection as Linux's
        tcp_v4_err does (RFC 1122 4.2.3.9 names only protocol and port unreachable).
        Returns whether it was such an error (the owner counts those).
        """
        if report.frag_needed:
            if path_mtu is not None:
                self.path_mtu_changed(path_mtu, now)
            return False
        hard = report.type == wicmp.DEST_UNREACHABLE
        self.icmp_error(error_to_exception(report.type, report.code), hard, now)
        return True

    def icmp_error(self, err: OSError, hard: bool, now: float) -> None:
        """RFC 1122 4.2.3.9: hard errors abort an opening connection; soft ones are kept."""
        if self.state in (SYN_SENT, SYN_RECEIVED) and hard:
            self._enter_closed(err)
        else:
            self.soft_error = err

    def _enter_time_wait(self, now: float) -> None:
        self.state = TIME_WAIT
        self.rto_at = None
        self.persist_at = None
        self.keepalive_at = None
        self.delack_at = None
        self.time_wait_at = now + 2 * self.config.msl

    def _enter_closed(self, error: OSError | None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.state = CLOSED
        self.rto_at = self.persist_at = self.delack_at = None
        self.rack_timer_at = self.pto_at = None
        self.keepalive_at = self.time_wait_at = None
        self.ack_now = False
