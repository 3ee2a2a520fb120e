"""TCP demultiplexing: connections, listeners with bounded backlogs, TIME_WAIT, RSTs.

Segments for a known 4-tuple go to that connection. A SYN for a listening port
creates a connection in SYN-RECEIVED if the listener's backlog (half-open plus
not yet accepted) has room; beyond it the SYN is dropped and counted, and the
peer retries (Linux without syncookies). Anything else for which no connection
exists is answered with a RST (RFC 9293 3.10.7.1), never a RST in reply to a RST.

Connections that reach TIME_WAIT leave their task and their buffers behind and
live on as a small record here (like Linux's timewait sockets), bounded in
number; the oldest gives way when the table is full.
"""

from __future__ import annotations

import errno
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs

from ...wire import tcp as wtcp
from ...wire.addr import ip_to_str
from ...wire.errors import ParseError
from ..counters import Counters
from ..icmp import IcmpErrorReport
from ..ipv4 import Delivery
from ..ports import pick_ephemeral
from ..ratelimit import TokenBucket
from . import seq as S
from .connection import TcpConfig, TcpConnection
from .isn import IsnGenerator, tsval
from .seq import Seq

H = TypeVar("H")
Key = tuple[int, int, int, int]  # local ip, local port, remote ip, remote port


@attrs.frozen
class DemuxConfig:
    max_time_wait: int = 16384
    challenge_ack_rate: float = 1000.0  # RFC 5961 10: a system-wide limit (Linux: 1000/s)


@attrs.define(eq=False)
class Listener(Generic[H]):
    local_ip: int  # 0: any
    port: int
    backlog: int
    handle: H
    config: TcpConfig
    pending: set[TcpConnection] = attrs.Factory(set)  # SYN-RECEIVED
    ready: list[TcpConnection] = attrs.Factory(list)  # established, not yet accepted


@attrs.define(slots=True)
class TimeWait:
    expires: float
    snd_nxt: Seq
    rcv_nxt: Seq
    ts_recent: int | None
    ts_offset: int


class TcpDemux(Generic[H]):
    def __init__(
        self,
        config: TcpConfig,
        isn: IsnGenerator,
        randrange: Callable[[int, int], int],
        demux_config: DemuxConfig | None = None,
    ) -> None:
        self.config = config
        self.dconfig = demux_config or DemuxConfig()
        self.isn = isn
        self.counters = Counters()
        self.connections: dict[Key, TcpConnection] = {}
        self.listeners: dict[tuple[int, int], Listener[H]] = {}
        self.time_wait: OrderedDict[Key, TimeWait] = OrderedDict()
        self.out: list[tuple[int, int, bytes]] = []  # (src, dst, segment) we send ourselves
        self.accepted: list[tuple[TcpConnection, Listener[H]]] = []  # new passive connections
        self._randrange = randrange
        self._challenge = TokenBucket(
            self.dconfig.challenge_ack_rate, self.dconfig.challenge_ack_rate, 0.0
        )

    # --- outputs, taken by the owner after each call --------------------------------

    @property
    def has_output(self) -> bool:
        """Whether segments of our own (RSTs, TIME_WAIT ACKs) wait in :meth:`take_output`."""
        return bool(self.out)

    def take_output(self) -> list[tuple[int, int, bytes]]:
        """Hand over the segments the demultiplexer answered with itself, in order, as
        ``(source address, destination address, segment)``."""
        out = self.out
        self.out = []
        return out

    def take_accepted(self) -> list[tuple[TcpConnection, Listener[H]]]:
        """Hand over the connections that listeners opened (in SYN-RECEIVED, their SYN-ACK
        in their own output) since the last call, with their listener."""
        accepted = self.accepted
        if accepted:  # taken every round: when empty, no new list (do not modify it)
            self.accepted = []
        return accepted

    @staticmethod
    def key(conn: TcpConnection) -> Key:
        return (conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port)

    # --- opening -------------------------------------------------------------------

    def listen(
        self, local_ip: int, port: int, backlog: int, handle: H, config: TcpConfig | None = None
    ) -> Listener[H]:
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"port {port} out of range 1..65535")
        for ip, p in self.listeners:
            if p == port and (ip == 0 or local_ip in (0, ip)):
                where = ip_to_str(local_ip) if local_ip else "*"
                raise OSError(errno.EADDRINUSE, f"TCP port {where}:{port} is in use")
        listener = Listener(local_ip, port, max(1, backlog), handle, config or self.config)
        self.listeners[(local_ip, port)] = listener
        return listener

    def unlisten(self, listener: Listener[H], now: float) -> list[TcpConnection]:
        """Close a listening port. Its connections not yet accepted are reset, as close()
        on a Linux listener resets them (RFC 9293 3.10.5 ABORT for each).

        Returns those connections: each is CLOSED with its RST in ``out``, and its owner
        sends that and retires it (:meth:`remove`) like any connection that ended.
        """
        self.listeners.pop((listener.local_ip, listener.port), None)
        aborted = list(listener.ready) + list(listener.pending)
        for conn in aborted:
            conn.app_abort(now)
        listener.ready.clear()
        listener.pending.clear()
        return aborted

    def connect(
        self,
        local_ip: int,
        remote_ip: int,
        remote_port: int,
        local_mss: int,
        now: float,
        *,
        local_port: int = 0,
        config: TcpConfig | None = None,
    ) -> TcpConnection:
        if local_port == 0:
            local_port = self._ephemeral(local_ip, remote_ip, remote_port)
        key = (local_ip, local_port, remote_ip, remote_port)
        if key in self.connections or key in self.time_wait:
            raise OSError(errno.EADDRINUSE, "that 4-tuple is in use")
        conn = self._new_connection(key, local_mss, now, config or self.config)
        self.connections[key] = conn
        conn.connect(now)
        return conn

    def _new_connection(
        self, key: Key, local_mss: int, now: float, config: TcpConfig
    ) -> TcpConnection:
        lip, lport, rip, rport = key
        return TcpConnection(
            config,
            (lip, lport),
            (rip, rport),
            self.isn.isn(lip, lport, rip, rport, now),
            self.isn.ts_offset(lip, lport, rip, rport),
            local_mss,
            now,
            challenge_allowed=self._challenge.allow,
        )

    def _ephemeral(self, local_ip: int, remote_ip: int, remote_port: int) -> int:
        def is_free(port: int) -> bool:
            # Free for this 4-tuple (RFC 6056 allows reusing a port towards other peers),
            # and not a listening port.
            key = (local_ip, port, remote_ip, remote_port)
            return (
                key not in self.connections
                and key not in self.time_wait
                and (local_ip, port) not in self.listeners
                and (0, port) not in self.listeners
            )

        port = pick_ephemeral(self._randrange, is_free)
        if port is None:
            raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral TCP port")
        return port

    # --- input ---------------------------------------------------------------------

    def input_untrusted(
        self,
        delivery: Delivery,
        trusted: bool,
        local_mss: int | Callable[[int], int],
        now: float,
    ) -> tuple[TcpConnection, wtcp.TcpSegment] | None:
        """Find the segment's connection; handle listeners, TIME_WAIT and RSTs here.

        ``local_mss`` is our MSS towards the sender, or a function of the sender's
        address giving it (only a SYN to a listener needs it: a route lookup per
        segment would be wasted on established connections).
        """
        header = delivery.header
        if delivery.broadcast:
            self.counters.incr("broadcast_dropped")  # RFC 1122 4.2.3.10
            return None
        try:
            seg = wtcp.parse_untrusted(
                delivery.payload, header.src, header.dst, verify_checksum=not trusted
            )
        except ParseError as exc:
            self.counters.incr(exc.reason)
            return None
        key = (header.dst, seg.dport, header.src, seg.sport)
        conn = self.connections.get(key)
        if conn is not None:
            return conn, seg
        tw = self.time_wait.get(key)
        if tw is not None:
            if tw.expires <= now:
                del self.time_wait[key]
            elif not self._time_wait_input(key, tw, seg, now):
                return None
        listener = self.listeners.get((header.dst, seg.dport)) or self.listeners.get((0, seg.dport))
        if listener is not None:
            self._listen_input(listener, key, seg, local_mss, now)
            return None
        self.counters.incr("no_socket")
        self._reset_for(key, seg)
        return None

    def _listen_input(
        self,
        listener: Listener[H],
        key: Key,
        seg: wtcp.TcpSegment,
        local_mss: int | Callable[[int], int],
        now: float,
    ) -> None:
        """RFC 9293 3.10.7.2, LISTEN state."""
        flags = seg.flags
        if flags & wtcp.RST:
            return
        if flags & wtcp.ACK:
            self._reset_for(key, seg)
            return
        if not flags & wtcp.SYN:
            return
        if len(listener.pending) + len(listener.ready) >= listener.backlog:
            self.counters.incr("listen_overflow")
            return
        mss = local_mss if isinstance(local_mss, int) else local_mss(key[2])
        conn = self._new_connection(key, mss, now, listener.config)
        conn.accept_syn(seg, now)
        self.connections[key] = conn
        listener.pending.add(conn)
        self.accepted.append((conn, listener))
        self.counters.incr("syn_accepted")

    def _time_wait_input(self, key: Key, tw: TimeWait, seg: wtcp.TcpSegment, now: float) -> bool:
        """Handle a segment for a TIME_WAIT record; True lets a new SYN through."""
        flags = seg.flags
        if flags & wtcp.RST:
            self.counters.incr("time_wait_rst_ignored")  # RFC 1337
            return False
        if flags & wtcp.SYN and not flags & wtcp.ACK:
            # RFC 9293 3.10.7.4 / RFC 6191: a new incarnation may reuse the 4-tuple
            # when its SYN is beyond the old connection (sequence or timestamp).
            ts = seg.options.timestamp
            newer = S.gt(Seq(seg.seq), tw.rcv_nxt) or (
                ts is not None and tw.ts_recent is not None and S.gt(Seq(ts[0]), Seq(tw.ts_recent))
            )
            if newer:
                del self.time_wait[key]
                self.counters.incr("time_wait_reused")
                return True
        # A retransmitted FIN (or anything else): acknowledge again (RFC 9293 3.10.7.4).
        if flags & wtcp.FIN:
            tw.expires = now + 2 * self.config.msl
        lip, lport, rip, rport = key
        timestamp = None
        if tw.ts_recent is not None:
            timestamp = (tsval(now, tw.ts_offset), tw.ts_recent)
        ack = wtcp.build(
            lip, rip, lport, rport, tw.snd_nxt, tw.rcv_nxt, wtcp.ACK, 0, timestamp=timestamp
        )
        self.out.append((lip, rip, ack))
        self.counters.incr("time_wait_acks")
        return False

    def _reset_for(self, key: Key, seg: wtcp.TcpSegment) -> None:
        """RFC 9293 3.10.7.1: the RST for a segment that matches no connection."""
        if seg.flags & wtcp.RST:
            return
        lip, lport, rip, rport = key
        if seg.flags & wtcp.ACK:
            rst = wtcp.build(lip, rip, lport, rport, seg.ack, 0, wtcp.RST, 0)
        else:
            ack = (seg.seq + seg.seg_len) & 0xFFFFFFFF
            rst = wtcp.build(lip, rip, lport, rport, 0, ack, wtcp.RST | wtcp.ACK, 0)
        self.out.append((lip, rip, rst))
        self.counters.incr("rst_sent")

    # --- lifecycle -------------------------------------------------------------------

    def established(self, conn: TcpConnection, listener: Listener[H]) -> bool:
        """Move a passive connection from half-open to the accept queue."""
        if conn in listener.pending:
            listener.pending.discard(conn)
            listener.ready.append(conn)
            return True
        return False

    def enter_time_wait(self, conn: TcpConnection, now: float) -> None:
        key = self.key(conn)
        self.connections.pop(key, None)
        expires = conn.time_wait_at if conn.time_wait_at is not None else now
        self.time_wait[key] = TimeWait(
            expires,
            conn.snd_nxt,
            conn.rcv.rcv_nxt,
            conn.ts_recent if conn.ts_ok else None,
            conn.ts_offset,
        )
        self.time_wait.move_to_end(key)
        while len(self.time_wait) > self.dconfig.max_time_wait:
            self.time_wait.popitem(last=False)
            self.counters.incr("time_wait_evicted")
        self.counters.incr("time_wait_entered")

    def remove(self, conn: TcpConnection) -> None:
        key = self.key(conn)
        if self.connections.get(key) is conn:
            del self.connections[key]
        for listener in self.listeners.values():
            listener.pending.discard(conn)

    def expire_time_wait(self, now: float) -> None:
        while self.time_wait:
            key, tw = next(iter(self.time_wait.items()))
            if tw.expires > now:
                # Not strictly ordered when a FIN restarted a record; good enough as a
                # sweep: such a record is re-examined on the next pass.
                break
            del self.time_wait[key]
            self.counters.incr("time_wait_expired")

    def next_time_wait_expiry(self) -> float | None:
        for tw in self.time_wait.values():
            return tw.expires
        return None

    def find_for_error(self, report: IcmpErrorReport) -> TcpConnection | None:
        """The connection that sent the segment an ICMP error quotes."""
        quoted = report.quoted
        ports = report.quoted_ports
        if ports is None or len(quoted) < 8:
            return None
        original = report.original
        conn = self.connections.get((original.src, ports[0], original.dst, ports[1]))
        if conn is None:
            return None
        # RFC 5927 / RFC 5961: believe it only if it quotes a sequence number in flight.
        quoted_seq = Seq(int.from_bytes(quoted[4:8], "big"))
        if S.le(conn.snd_una, quoted_seq) and S.le(quoted_seq, conn.snd_max):
            return conn
        self.counters.incr("icmp_error_out_of_window")
        return None
