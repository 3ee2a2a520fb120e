"""The transmission control block (RFC 9293 3.3.1) that every part of a connection shares.

:class:`~.connection.TcpConnection` is one object assembled from mixins, one per concern
(:mod:`.handshake`, :mod:`.checks`, :mod:`.sender`, :mod:`.receiver`, :mod:`.recovery`,
:mod:`.emit`, :mod:`.timers`), as gVisor splits its endpoint into connect, snd, rcv,
sack_recovery and timer files. Every mixin derives from :class:`Tcb`, which holds every
field of the connection in its ``__slots__``: Python combines several bases only when at
most one of them lays out slots, and the connection's size matters (a TCB per
connection, docs/performance.md). The per-segment path costs what it did when this was
one class: methods and slots are found through the class's cached attribute lookup, with
no helper object in between.

This module also holds what the mixins share: the states, the configuration and
:func:`window_shift`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from ...wire import tcp as wtcp
from ..counters import Counters
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


class Tcb:
    """Every field of one connection; the mixins hold the behaviour."""

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

    if TYPE_CHECKING:
        # What one mixin calls on another, declared for the type checker only: at run
        # time this block does not exist and the mixins' own definitions are found.
        # connection.py
        def _enter_time_wait(self, now: float) -> None: ...
        def _enter_closed(self, error: OSError | None) -> None: ...
        # handshake.py
        def _offer_options(self, options: dict[str, object], now: float) -> None: ...
        def _send_syn(self, now: float, *, ack: bool) -> None: ...
        # checks.py
        def _challenge_ack(self, now: float) -> None: ...
        # sender.py
        def _transmit(self, now: float, extra: int = 0) -> None: ...
        def _send_data(self, now: float, extra: int, limit: int | None = None) -> bool: ...
        def _payload_room(self) -> int: ...
        def _buffer_offset(self, at: Seq) -> int: ...
        def _set_window(self, seg: wtcp.TcpSegment) -> None: ...
        def _process_ack(self, seg: wtcp.TcpSegment, now: float) -> bool: ...
        def _ack_advanced(self, ack: Seq, seg: wtcp.TcpSegment, now: float) -> None: ...
        # receiver.py
        def _process_text(
            self, seg: wtcp.TcpSegment, now: float, skip_syn: bool = False
        ) -> None: ...
        def _schedule_ack(self, now: float, *, immediate: bool = False) -> None: ...
        def _advertise(self) -> int: ...
        # recovery.py
        def _duplicate_ack(self, seg: wtcp.TcpSegment, now: float) -> None: ...
        def _enter_recovery(self, now: float) -> None: ...
        def _rack_after_ack(self, ack: Seq, now: float) -> None: ...
        def _arm_pto(self, now: float) -> None: ...
        def _dsack_undo(self, blocks: list[tuple[Seq, Seq]], now: float) -> None: ...
        def _pipe(self) -> int: ...
        def _sack_recovery(self, now: float, force: bool = False) -> None: ...
        def _retransmit_first(self, now: float) -> None: ...
        # emit.py
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
        ) -> None: ...
        def _send_ack(self, now: float) -> None: ...
        # timers.py
        def _arm_rto(self, now: float, restart: bool = False) -> None: ...
