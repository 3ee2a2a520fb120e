"""One TCP connection: the transmission control block and its state machine.

Theory of operation
-------------------
A :class:`TcpConnection` is a pure machine (RFC 9293). Its inputs are segments
(:meth:`on_segment`), the application's calls (:meth:`app_send`,
:meth:`app_receive`, :meth:`app_close`, :meth:`app_abort`) and time
(:meth:`handle_timer`); every input carries ``now``. Its outputs are TCP
segments appended to :attr:`out` (bytes ready to become an IPv4 payload) and
changes of :attr:`state`, :attr:`error` and the readable/writable conditions,
which the owner inspects after each call.

Sending. The send buffer holds every byte from ``snd_una`` on: acknowledged
bytes are deleted from its front (a bytearray does that in O(1) amortised), so
offset ``i`` in the buffer is sequence number ``snd_una + i`` (plus one while
our SYN is unacknowledged). :meth:`_transmit` sends what the peer's window, the
congestion window and Nagle's algorithm allow; after a retransmission timeout
``snd_nxt`` is pulled back to ``snd_una`` and the data is sent again, while
``snd_max`` remembers the highest sequence number ever sent so that ACKs for the
original transmissions stay acceptable.

Timers. One deadline per purpose (retransmission, persist, delayed ACK,
keepalive, TIME_WAIT); :meth:`get_timer` returns the earliest, so the owning
task sleeps exactly until something is due.

Hardening. Sequence numbers only go through :mod:`.seq`; RST, SYN and ACK
checks follow RFC 5961 (challenge ACKs, rate limited through a shared bucket);
PAWS (RFC 7323 5) rejects old duplicates; every buffer is bounded.
"""

from __future__ import annotations

import enum
import errno
import math
from collections.abc import Callable

import attrs

from ...wire import tcp as wtcp
from ..counters import Counters
from . import seq as S
from .congestion import CongestionControl, make_congestion_control
from .rack import Rack
from .rcvbuf import ReceiveQueue
from .rtt import RtoConfig, RttEstimator
from .sack import Scoreboard
from .seq import Seq


class TcpState(enum.Enum):
    """The eleven connection states of RFC 9293 3.3.2; a value is the state's RFC name."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"

    # Members are singletons, so identity hashing is exact; Enum's own __hash__ is a
    # Python-level call, which would make every ``state in SYNCHRONIZED`` test on the
    # per-segment path several times dearer than it was with strings.
    __hash__ = object.__hash__


# Module-level names, as the states were once plain strings (``from .connection import
# ESTABLISHED`` keeps working).
CLOSED = TcpState.CLOSED
LISTEN = TcpState.LISTEN
SYN_SENT = TcpState.SYN_SENT
SYN_RECEIVED = TcpState.SYN_RECEIVED
ESTABLISHED = TcpState.ESTABLISHED
FIN_WAIT_1 = TcpState.FIN_WAIT_1
FIN_WAIT_2 = TcpState.FIN_WAIT_2
CLOSE_WAIT = TcpState.CLOSE_WAIT
CLOSING = TcpState.CLOSING
LAST_ACK = TcpState.LAST_ACK
TIME_WAIT = TcpState.TIME_WAIT

SYNCHRONIZED = frozenset(
    {ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT}
)
#: States in which received data is accepted (RFC 9293 3.10.7.4, "seventh").
RECEIVING = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})
#: States in which we may still send data.
SENDING = frozenset({ESTABLISHED, CLOSE_WAIT})
# States in which the application may still queue data (before the handshake ends too).
APP_SENDABLE = SENDING | {SYN_SENT, SYN_RECEIVED}
# States in which queued data and the FIN still go out.
DATA_OUT = SENDING | {FIN_WAIT_1, CLOSING, LAST_ACK}

DEFAULT_MSS = 536  # RFC 9293 3.7.1: assumed when the peer sends no MSS option
TS_OPTION_LEN = 12  # NOP NOP TS: what each segment spends on timestamps
# A batch's in-order data is acknowledged at least every this many bytes (GRO's 64 KiB).
STRETCH_ACK_LIMIT = 65536
INVALID_ACK_INTERVAL = 0.5  # seconds between ACKs answering unacceptable segments
PAWS_IDLE = 24 * 24 * 3600.0  # RFC 7323 5.5: ts_recent older than 24 days is invalid
WORST_DELAYED_ACK = 0.2  # RFC 8985 7.2 WCDelAckT
MAX_UNDO_RANGES = 256
MIN_PTO = 0.01  # Linux's floor: a probe never beats a LAN's ACK clock


@attrs.frozen
class Keepalive:
    """RFC 1122 4.2.3.6; the defaults are Linux's (2 h idle, 75 s apart, 9 probes)."""

    idle: float = 7200.0
    interval: float = 75.0
    count: int = 9


@attrs.frozen
class TcpConfig:
    send_buffer: int = 4 * 1024 * 1024
    receive_buffer: int = 4 * 1024 * 1024
    nodelay: bool = False
    delayed_ack: float = 0.04  # Linux's minimum ATO; RFC 9293 3.8.6.3 allows up to 0.5 s
    keepalive: Keepalive | None = None
    syn_retries: int = 6  # Linux: 1+2+4+...+64 s, about 127 s before connect() fails
    synack_retries: int = 5
    max_retransmits: int = 15  # Linux's tcp_retries2: ~15 minutes with backoff
    user_timeout: float | None = None  # RFC 5482: fail after this long without progress
    msl: float = 30.0  # TIME_WAIT lasts 2*MSL = 60 s, as in Linux
    timestamps: bool = True
    sack: bool = True
    window_scaling: bool = True
    congestion: str = "cubic"
    rto: RtoConfig = RtoConfig()
    max_ooo_ranges: int = 256
    persist_max: float = 60.0  # cap of the zero-window probe backoff


def window_shift(buffer: int) -> int:
    """Smallest RFC 7323 shift whose scaled 16-bit window covers ``buffer``."""
    shift = 0
    while (0xFFFF << shift) < buffer and shift < wtcp.MAX_WSCALE:
        shift += 1
    return shift


class TcpConnection:
    # Slots: a TCB per connection, so its size matters (docs/performance.md).
    __slots__ = (
        "_challenge_allowed",
        "ack_at_end",
        "ack_now",
        "batching",
        "bytes_acked",
        "bytes_received",
        "bytes_sent",
        "cc",
        "config",
        "counters",
        "created",
        "csum_partial",
        "delack_at",
        "dsack",
        "dupacks",
        "error",
        "fast_retransmits",
        "fin_queued",
        "fin_received",
        "fin_sent",
        "fin_seq",
        "gso_limit",
        "gso_mtu",
        "in_recovery",
        "irs",
        "iss",
        "keepalive_at",
        "keepalive_probes",
        "last_ack_sent",
        "last_invalid_ack",
        "last_progress",
        "last_receive",
        "last_send",
        "local_ip",
        "local_mss",
        "local_port",
        "max_snd_wnd",
        "mss",
        "nodelay",
        "out",
        "peer_mss",
        "persist_at",
        "persist_backoff",
        "prior_cwnd",
        "prior_ssthresh",
        "pto_at",
        "rack",
        "rack_timer_at",
        "rcv",
        "rcv_adv",
        "rcv_wscale",
        "receive_closed",
        "recover",
        "remote_ip",
        "remote_port",
        "retransmits",
        "retransmitted_segments",
        "rexmit_high",
        "rto_at",
        "rtt",
        "rtt_sent",
        "rtt_seq",
        "sack_ok",
        "sb",
        "segments_offloaded",
        "segments_received",
        "segments_sent",
        "snd_max",
        "snd_nxt",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "sndbuf",
        "soft_error",
        "state",
        "time_wait_at",
        "timeouts",
        "tlp_end",
        "tlp_probes",
        "ts_offset",
        "ts_ok",
        "ts_recent",
        "ts_recent_at",
        "unacked_segments",
        "undo_active",
        "undo_ranges",
        "undo_retrans",
        "undone",
        "zero_window_probes",
    )

    def __init__(
        self,
        config: TcpConfig,
        local: tuple[int, int],
        remote: tuple[int, int],
        iss: Seq,
        ts_offset: int,
        local_mss: int,
        now: float,
        *,
        challenge_allowed: Callable[[float], bool] | None = None,
    ) -> None:
        self.config = config
        self.local_ip, self.local_port = local
        self.remote_ip, self.remote_port = remote
        self.counters = Counters()
        self.state = CLOSED
        self.error: OSError | None = None
        self.soft_error: OSError | None = None  # ICMP news reported if we later time out
        self.out: list[bytes] = []
        self.created = now
        self._challenge_allowed = challenge_allowed or (lambda now: True)

        # --- send sequence space (RFC 9293 3.3.1)
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.max_snd_wnd = 0
        self.snd_wl1 = Seq(0)
        self.snd_wl2 = iss
        self.snd_wscale = 0
        self.sndbuf = bytearray()
        self.fin_queued = False  # the application closed its side
        self.fin_sent = False
        # --- receive sequence space
        self.irs = Seq(0)
        self.rcv: ReceiveQueue = ReceiveQueue(Seq(0), config.max_ooo_ranges)
        self.rcv_wscale = window_shift(config.receive_buffer) if config.window_scaling else 0
        self.rcv_adv = Seq(0)  # right edge of the window we advertised
        self.fin_received = False
        self.receive_closed = False  # the application closed without half-closing
        self.dsack: tuple[Seq, Seq] | None = None  # a duplicate to report (RFC 2883)
        self.fin_seq: Seq | None = None  # a FIN that arrived ahead of missing data
        self.last_ack_sent = Seq(0)
        # --- options
        self.local_mss = local_mss  # what we announce: path MTU - 40
        self.peer_mss = DEFAULT_MSS
        self.mss = min(DEFAULT_MSS, local_mss)  # payload bytes per segment we send
        self.sack_ok = False
        self.ts_ok = False
        self.ts_offset = ts_offset
        self.ts_recent = 0
        self.ts_recent_at = now
        # --- loss recovery and congestion control
        self.rtt = RttEstimator(config.rto)
        self.cc: CongestionControl = make_congestion_control(config.congestion, self.mss)
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss
        self.sb = Scoreboard()  # what the peer SACKed (RFC 6675)
        self.rexmit_high = iss  # holes below this were resent in this recovery
        self.rack = Rack()  # RFC 8985, used when SACK is on
        self.rack_timer_at: float | None = None  # RACK reordering timer
        self.pto_at: float | None = None  # tail loss probe timer (RFC 8985 7)
        self.tlp_end: Seq | None = None  # snd_max when the outstanding probe went out
        self.tlp_probes = 0
        # D-SACK undo (RFC 2883 / Linux's tcp_try_undo_dsack): when every retransmission of
        # a recovery turns out to have been a duplicate, the window cut was needless.
        self.undo_active = False
        self.undo_retrans = 0
        self.undo_ranges: list[tuple[Seq, Seq]] = []  # what this recovery resent
        self.prior_cwnd = 0
        self.prior_ssthresh = 0
        self.undone = 0
        self.retransmits = 0  # consecutive timeouts without progress
        self.rtt_seq: Seq | None = None  # Karn-timed segment when timestamps are off
        self.rtt_sent = 0.0
        self.last_progress = now
        self.last_send = now
        self.last_receive = now
        # --- timers (absolute deadlines, or None)
        self.rto_at: float | None = None
        self.persist_at: float | None = None
        self.persist_backoff = 0
        self.delack_at: float | None = None
        self.keepalive_at: float | None = None
        self.keepalive_probes = 0
        self.time_wait_at: float | None = None
        self.ack_now = False
        self.unacked_segments = 0
        self.batching = False  # inside on_segments()
        self.ack_at_end = False  # in-order data to acknowledge when the batch ends
        self.last_invalid_ack = -math.inf
        # --- totals for statistics()
        self.bytes_sent = 0
        self.bytes_acked = 0
        self.bytes_received = 0
        self.segments_sent = 0
        self.segments_received = 0
        self.retransmitted_segments = 0
        self.fast_retransmits = 0
        self.timeouts = 0
        self.zero_window_probes = 0
        self.nodelay = config.nodelay
        # Largest TCP payload the device will cut into MSS-sized segments for us (TSO);
        # 0 when it will not. Set by the owner from the link's offload.
        self.gso_limit = 0
        self.gso_mtu = 0  # the link MTU that the device cuts at
        # The device completes our checksums (TAP offload): segments carry the partial sum.
        self.csum_partial = False
        self.segments_offloaded = 0

    # =================================================================== opening

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

    # =============================================================== application

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
        return bool(len(self.rcv)) or self.fin_received or self.state == CLOSED

    def app_close(self, now: float, *, full: bool = False) -> None:
        """Send FIN after the queued data (RFC 9293 3.10.4 CLOSE).

        ``full`` means the application will not read either (a socket close rather
        than a half-close): data arriving afterwards is answered with RST
        (RFC 1122 4.2.2.13).
        """
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
        elif self.state == CLOSE_WAIT:
            self.state = LAST_ACK
        self._transmit(now)

    def app_abort(self, now: float, error: OSError | None = None) -> None:
        """Reset the connection (RFC 9293 3.10.5 ABORT); ``error`` is what users see."""
        if self.state in SYNCHRONIZED | {SYN_RECEIVED} and self.state != TIME_WAIT:
            self._emit(now, self.snd_nxt, 0, wtcp.RST)
        self._enter_closed(error)

    # ================================================================ input

    def on_segment(self, seg: wtcp.TcpSegment, now: float) -> None:
        self.segments_received += 1
        self.last_receive = now
        self.keepalive_probes = 0
        if self.state == SYN_SENT:
            self._on_syn_sent(seg, now)
        elif self.state == TIME_WAIT:
            self._on_time_wait(seg, now)
        elif self.state != CLOSED:
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

    def _set_window(self, seg: wtcp.TcpSegment) -> None:
        # A segment carrying SYN has an unscaled window (RFC 7323 2.2).
        shift = 0 if seg.flags & wtcp.SYN else self.snd_wscale
        self.snd_wnd = seg.window << shift
        self.snd_wl1 = Seq(seg.seq)
        self.snd_wl2 = Seq(seg.ack)
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)

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
                if self.state == SYN_RECEIVED and self.error is None:
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
            if self.state == SYN_RECEIVED and Seq(seg.seq) == self.irs:
                self._send_syn(now, ack=True)  # their SYN again: our SYN-ACK was lost
                return
            self._challenge_ack(now)
            return
        if not flags & wtcp.ACK:
            counters.incr("no_ack_dropped")
            return
        self._update_ts_recent(seg, now)
        ack = Seq(seg.ack)
        if self.state == SYN_RECEIVED:
            if S.lt(self.snd_una, ack) and S.le(ack, self.snd_max):
                self.state = ESTABLISHED
                self._set_window(seg)
                self.counters.incr("passive_opens")
            else:
                self._emit(now, ack, 0, wtcp.RST, with_ack=False)
                return
        if not self._process_ack(seg, now):
            return
        if self.state == CLOSED:
            return
        self._process_text(seg, now)
        self._transmit(now)

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
        if self.state == FIN_WAIT_1 and fin_acked:
            self.state = FIN_WAIT_2
        elif self.state == CLOSING and fin_acked:
            self._enter_time_wait(now)
        elif self.state == LAST_ACK and fin_acked:
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
            elapsed_ms = (self._ts_now(now) - ts[1]) & 0xFFFFFFFF
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

    def _buffer_offset(self, at: Seq) -> int:
        """Index into sndbuf of sequence number ``at``."""
        base = S.add(self.snd_una, 1) if self.snd_una == self.iss else self.snd_una
        return S.diff(at, base)

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
            if self.state == ESTABLISHED:
                self.state = CLOSE_WAIT
            elif self.state == FIN_WAIT_1:
                if self.fin_sent and self.snd_una == self.snd_max:
                    self._enter_time_wait(now)
                else:
                    self.state = CLOSING  # simultaneous close (RFC 9293 figure 13)
            elif self.state == FIN_WAIT_2:
                self._enter_time_wait(now)

    def _on_time_wait(self, seg: wtcp.TcpSegment, now: float) -> None:
        """TIME-WAIT: re-ACK a retransmitted FIN and restart 2*MSL (RFC 9293 3.10.7.4)."""
        if seg.flags & wtcp.RST:
            self.counters.incr("rst_in_time_wait_ignored")  # RFC 1337
            return
        if seg.flags & wtcp.FIN:
            self.time_wait_at = now + 2 * self.config.msl
        self._schedule_ack(now, immediate=True)
        self._send_ack(now)

    def _challenge_ack(self, now: float) -> None:
        if self._challenge_allowed(now):
            self.counters.incr("challenge_acks")
            self._schedule_ack(now, immediate=True)
            self._transmit(now)
        else:
            self.counters.incr("challenge_acks_suppressed")

    # ================================================================ output

    def _ts_now(self, now: float) -> int:
        return (int(now * 1000) + self.ts_offset) & 0xFFFFFFFF

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

    def _emit(
        self,
        now: float,
        seq_no: Seq,
        ack: int,
        flags: int,
        payload: bytes | bytearray | memoryview = b"",
        *,
        with_ack: bool = True,
        syn_options: bool = False,
    ) -> None:
        if (with_ack and not flags & wtcp.RST) or flags & wtcp.ACK:
            flags |= wtcp.ACK
            ack = self.rcv.rcv_nxt
            self.last_ack_sent = self.rcv.rcv_nxt
            self.delack_at = None
            self.ack_now = False
            self.ack_at_end = False
            self.unacked_segments = 0
        window = 0
        if not flags & wtcp.RST:
            window = (
                min(self.config.receive_buffer, 0xFFFF) if flags & wtcp.SYN else (self._advertise())
            )
        options: dict[str, object] = {}
        if syn_options:
            options["mss"] = self.local_mss
            if self.config.window_scaling and (
                self.state == SYN_SENT or self.snd_wscale or self.rcv_wscale
            ):
                options["wscale"] = self.rcv_wscale
            if self.config.sack and (self.state == SYN_SENT or self.sack_ok):
                options["sack_permitted"] = True
            if self.config.timestamps and (self.state == SYN_SENT or self.ts_ok):
                options["timestamp"] = (self._ts_now(now), self.ts_recent)
        elif self.ts_ok and not flags & wtcp.RST:
            options["timestamp"] = (self._ts_now(now), self.ts_recent)
        if self.sack_ok and flags & wtcp.ACK and not flags & wtcp.SYN:
            room = 4 if not self.ts_ok else 3  # 40 option bytes: 3 blocks beside timestamps
            blocks: tuple[tuple[int, int], ...] = ()
            if self.dsack is not None:
                # RFC 2883 4: the duplicate range goes first, reported once.
                blocks = ((int(self.dsack[0]), int(self.dsack[1])),)
                self.dsack = None
            if self.rcv.has_gaps:
                blocks += self.rcv.sack_blocks(room - len(blocks))
            if blocks:
                options["sack_blocks"] = blocks
        segment = wtcp.build(
            self.local_ip,
            self.remote_ip,
            self.local_port,
            self.remote_port,
            seq_no,
            ack,
            flags,
            window,
            payload,
            partial_checksum=self.csum_partial,
            **options,  # type: ignore[arg-type]
        )
        self.out.append(segment)
        self.segments_sent += 1
        self.bytes_sent += len(payload)

    def _send_syn(self, now: float, *, ack: bool) -> None:
        flags = wtcp.SYN | (wtcp.ACK if ack else 0)
        self._emit(now, self.iss, 0, flags, with_ack=ack, syn_options=True)

    def _send_ack(self, now: float) -> None:
        self._emit(now, self.snd_max, 0, wtcp.ACK)

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

    def flush(self, now: float) -> None:
        """Send whatever is allowed now (after app calls that queued data or read)."""
        self._transmit(now)

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

    # ================================================================ timers

    def _arm_rto(self, now: float, restart: bool = False) -> None:
        if restart or self.rto_at is None:
            deadline = now + self.rtt.rto
            limit = self.config.user_timeout
            if limit is not None and S.lt(self.snd_una, self.snd_max):
                # Fail at the user timeout itself, not at the next backed-off RTO after
                # it (Linux's tcp_clamp_rto_to_user_timeout).
                deadline = min(deadline, self.last_progress + limit)
            self.rto_at = deadline

    def _arm_persist(self, now: float) -> None:
        # RFC 9293 3.8.6.1: probe a zero window with exponential backoff.
        delay = min(self.rtt.rto * (1 << self.persist_backoff), self.config.persist_max)
        self.persist_at = now + max(delay, self.config.rto.minimum)

    def _arm_keepalive(self, now: float) -> None:
        ka = self.config.keepalive
        if ka is not None and self.state in SYNCHRONIZED and self.state != TIME_WAIT:
            self.keepalive_at = now + (ka.idle if self.keepalive_probes == 0 else ka.interval)

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
        if self.state == CLOSED:
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
        if self.state != CLOSED:
            self._transmit(now)

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
        if self.state == SYN_SENT:
            if self.retransmits > cfg.syn_retries:
                self._enter_closed(self._timed_out())
                return
            self._send_syn(now, ack=False)
            self.retransmitted_segments += 1
            self._arm_rto(now)
            return
        if self.state == SYN_RECEIVED:
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

    # ================================================================ endings

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

    def icmp_error(self, err: OSError, hard: bool, now: float) -> None:
        """RFC 1122 4.2.3.9: hard errors abort an opening connection; soft ones are kept."""
        if self.state in (SYN_SENT, SYN_RECEIVED) and hard:
            self._enter_closed(err)
        else:
            self.soft_error = err
