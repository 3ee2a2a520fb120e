"""The TCP layer task and one child task per connection.

Theory of operation
-------------------
The layer task receives batches of datagrams from IPv4, lets the demultiplexer
(:class:`~trio_netstack.proto.tcp.demux.TcpDemux`) parse them and find their
connection, and hands each connection its segments as one batch on the
connection's own channel (``send_nowait``: a connection that cannot keep up
loses segments, and TCP recovers). It also sends what the demultiplexer answers
by itself (RSTs, TIME_WAIT ACKs) and starts a task for each new connection.

Each connection task owns its :class:`~trio_netstack.proto.tcp.connection.TcpConnection`
and sleeps until a segment batch, a kick from the application, or the machine's
earliest deadline (retransmission, persist, delayed ACK, keepalive): the task is
its timers. After every round it sends the machine's segments to IPv4 (awaiting:
backpressure) and wakes the application tasks parked on the connection.

Application calls on streams are synchronous machine calls (they never await
in the middle); a call that produced output or changed what the task must wait
for kicks the task.
"""

from __future__ import annotations

import errno
import math
import os
import random
from typing import Protocol

import trio

from ..proto.icmp import IcmpErrorReport
from ..proto.ipv4 import OutDatagram
from ..proto.route import NoRouteError
from ..proto.tcp.connection import (
    CLOSED,
    ESTABLISHED,
    FIN_WAIT_2,
    SYN_RECEIVED,
    TIME_WAIT,
    TcpConfig,
    TcpConnection,
)
from ..proto.tcp.demux import Listener, TcpDemux
from ..proto.tcp.isn import IsnGenerator
from ..proto.tcp.mss import mss_for_mtu
from ..proto.tcp.stats import TcpStatistics, connection_statistics, connection_totals
from ..wire import tcp as wtcp
from .channels import Mailbox, send_upward
from .config import StackConfig
from .events import (
    KICK,
    ConnectionIcmp,
    ConnectionMessage,
    Deliveries,
    IcmpReports,
    LayerMessage,
    Segments,
)
from .transport import Network


class AcceptQueue(Protocol):
    """What a listener's owner (the API's ``TcpListener``) offers the layer."""

    def _wake(self) -> None:
        """A connection became ready to accept."""


CONNECTION_QUEUE = 256  # segment batches queued for one connection task


class ConnectionHandle:
    """What the runtime keeps per connection: its inbox and the parked application tasks."""

    __slots__ = ("conn", "finished", "inbox", "kicked", "layer", "listener", "lot")

    def __init__(self, layer: TcpLayer, conn: TcpConnection) -> None:
        self.layer = layer
        self.conn = conn
        self.inbox: Mailbox[ConnectionMessage] = Mailbox(CONNECTION_QUEUE, layer.network.clock)
        # Made when an application task first parks: most idle connections have none.
        self.lot: trio.lowlevel.ParkingLot | None = None
        self.kicked = False
        self.finished = False  # the task ended (CLOSED, or handed to TIME_WAIT)
        self.listener: Listener[AcceptQueue] | None = None

    def flush(self) -> None:
        """Send what an application call produced (it never awaits).

        While the connection task is parked with nothing queued, the segments go to
        the device from the caller's task, as Linux's ``tcp_push`` runs in the
        sending process; the task's alarm moves earlier if the call armed a timer
        (RTO, persist). Otherwise the task is kicked and sends them itself (and
        retires the connection if the call ended it).
        """
        network = self.layer.network
        conn = self.conn
        if self.inbox.idle and network.can_transmit_now() and conn.state not in (TIME_WAIT, CLOSED):
            if conn.has_output:
                network.transmit_nowait(self.layer.datagrams(conn))
            self.inbox.wake_by(conn.get_timer())
        else:
            self.kick()

    def kick(self) -> None:
        """Wake the connection task to send what the application's call produced."""
        if not self.kicked and not self.finished:
            self.kicked = True
            if not send_upward(self.inbox, KICK):
                self.kicked = False

    async def wait_change(self) -> None:
        """Park until the connection task finished a round (or the connection ended)."""
        if self.finished:
            await trio.lowlevel.checkpoint()
            return
        if self.lot is None:
            self.lot = trio.lowlevel.ParkingLot()
        await self.lot.park()

    def wake(self) -> None:
        """Unpark the application tasks waiting in :meth:`wait_change`."""
        if self.lot:
            self.lot.unpark_all()


class TcpLayer:
    def __init__(self, network: Network, config: StackConfig, secret: int) -> None:
        self.network = network
        self.config: TcpConfig = config.tcp
        rng = random.Random(secret ^ 0x7C9)
        key = secret.to_bytes(16, "big", signed=False) if secret < (1 << 128) else os.urandom(16)
        self.demux: TcpDemux[AcceptQueue] = TcpDemux(
            config.tcp,
            IsnGenerator(key + b"trio_netstack-isn"),
            rng.randrange,
            config.tcp_demux,
        )
        self.inbox: Mailbox[LayerMessage] = Mailbox(config.layer_queue, network.clock)
        network.register(wtcp.PROTO_TCP, "tcp", self.inbox)
        self.handles: dict[TcpConnection, ConnectionHandle] = {}
        self._nursery: trio.Nursery | None = None
        self._finished_totals: dict[str, int] = {}  # totals of connections that ended

    def local_mss(self, dst: int) -> int:
        """The MSS we announce towards ``dst`` (from the path MTU, RFC 9293 3.7.1)."""
        try:
            return mss_for_mtu(self.network.path_mtu(dst))
        except NoRouteError:
            return mss_for_mtu(self.network.default_mtu)

    def totals(self) -> dict[str, int]:
        """Stack-wide sums of the per-connection counters (ended and live connections)."""
        result = dict(self._finished_totals)
        for conn in self.handles:
            for name, value in connection_totals(conn).items():
                result[name] = result.get(name, 0) + value
        return result

    # --- the layer task ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self._loop()

    async def _loop(self) -> None:
        demux = self.demux
        network = self.network
        local_mss = self.local_mss
        while True:
            deadline = demux.next_time_wait_expiry()
            messages = await self.inbox.get_batch(math.inf if deadline is None else deadline)
            now = trio.current_time()
            per_conn: dict[TcpConnection, list[wtcp.TcpSegment]] = {}
            for message in messages:
                if isinstance(message, Deliveries):
                    for delivery in message.items:
                        found = demux.input_untrusted(
                            delivery, bool(delivery.flags & 1), local_mss, now
                        )
                        if found is not None:
                            per_conn.setdefault(found[0], []).append(found[1])
                elif isinstance(message, IcmpReports):
                    for report in message.items:
                        self._icmp_error(report, now)
            for conn, listener in demux.take_accepted():
                self._spawn(conn, listener)
            for conn, segments in per_conn.items():
                handle = self.handles.get(conn)
                if handle is None:
                    demux.counters.incr("connection_queue_full")
                elif handle.inbox.idle and network.can_transmit_now():
                    self._round(handle, segments)
                elif not send_upward(handle.inbox, Segments(segments)):
                    demux.counters.incr("connection_queue_full")
            demux.expire_time_wait(now)
            if demux.has_output:
                await network.queue_datagrams(
                    [
                        OutDatagram(dst, wtcp.PROTO_TCP, seg, src=src, dont_fragment=True)
                        for src, dst, seg in demux.take_output()
                    ]
                )

    def _round(self, handle: ConnectionHandle, segments: list[wtcp.TcpSegment]) -> None:
        """The connection task's round, run by the layer task while the task is parked.

        A segment for an idle connection costs one task switch fewer: the machine is
        fed here (a TCB may be touched by synchronous calls outside its task, as the
        stream's calls do) and its answer goes straight to the device. The task only
        wakes when it must: a deadline moved earlier, or the connection ended.
        """
        self._feed(handle, [Segments(segments)])
        handle.wake()
        handle.flush()

    async def shutdown(self) -> None:
        """Close every connection as a host going down does, and wait for the FINs.

        Streams still open are closed (FIN); half-open and unaccepted connections are
        reset. Returns once every connection is closed, in TIME_WAIT or in FIN_WAIT_2
        (our FIN acknowledged); the caller bounds the wait.
        """
        now = trio.current_time()
        for handle in list(self.handles.values()):
            handle.conn.app_shutdown(now, accepted=handle.listener is None)
            handle.kick()
        while True:
            pending = [
                h
                for h in self.handles.values()
                if h.conn.state not in (CLOSED, TIME_WAIT, FIN_WAIT_2)
            ]
            if not pending:
                return
            await pending[0].wait_change()

    def _icmp_error(self, report: IcmpErrorReport, now: float) -> None:
        conn = self.demux.find_for_error(report)
        if conn is None:
            self.demux.counters.incr("icmp_error_unmatched")
            return
        handle = self.handles.get(conn)
        if handle is not None:
            send_upward(handle.inbox, ConnectionIcmp(report))

    # --- connection tasks --------------------------------------------------------------

    def _spawn(
        self, conn: TcpConnection, listener: Listener[AcceptQueue] | None = None
    ) -> ConnectionHandle:
        assert self._nursery is not None, "the TCP layer is not running"
        handle = ConnectionHandle(self, conn)
        handle.listener = listener
        try:
            route = self.network.route(conn.remote_ip)
        except NoRouteError:
            route = None
        if route is not None:
            link = self.network.link_of(route.ifindex)
            caps = link.capabilities
            # Offload (a TAP with IFF_VNET_HDR): the device completes checksums and cuts
            # our super-segments at its MTU (TSO), so segments carry only the pseudo-header
            # sum.
            conn.csum_partial = caps.tx_checksum_partial
            if caps.tso_max_payload and link.mtu == route.mtu:
                conn.gso_limit = caps.tso_max_payload
                conn.gso_mtu = route.mtu
        self.handles[conn] = handle
        self._nursery.start_soon(self._connection_task, handle)
        handle.kick()  # its first round sends the SYN or SYN-ACK already queued
        return handle

    def open_connection(
        self,
        local_ip: int,
        remote_ip: int,
        remote_port: int,
        local_port: int,
        config: TcpConfig,
    ) -> ConnectionHandle:
        now = trio.current_time()
        conn = self.demux.connect(
            local_ip,
            remote_ip,
            remote_port,
            self.local_mss(remote_ip),
            now,
            local_port=local_port,
            config=config,
        )
        return self._spawn(conn)

    async def _connection_task(self, handle: ConnectionHandle) -> None:
        conn = handle.conn
        network = self.network
        try:
            while True:
                deadline = conn.get_timer()
                # No local names the batch or the segments: an idle connection parked
                # here must not keep its last frames alive (memory per idle connection).
                now = self._feed(
                    handle, await handle.inbox.get_batch(math.inf if deadline is None else deadline)
                )
                if conn.has_output:
                    await network.queue_datagrams(self.datagrams(conn))
                handle.wake()
                if conn.state is TIME_WAIT:
                    self.demux.enter_time_wait(conn, now)
                    return
                if conn.state is CLOSED:
                    self.demux.remove(conn)
                    return
        finally:
            for name, value in connection_totals(conn).items():
                self._finished_totals[name] = self._finished_totals.get(name, 0) + value
            self.handles.pop(conn, None)
            if conn.state not in (CLOSED, TIME_WAIT):
                # The stack is shutting down: streams still held fail clearly.
                conn.app_abort(trio.current_time(), OSError(errno.ENETDOWN, "the stack was closed"))
                self.demux.remove(conn)
            handle.inbox.close()
            handle.finished = True
            handle.wake()
            if handle.listener is not None:
                handle.listener.pending.discard(conn)

    def _feed(self, handle: ConnectionHandle, messages: list[ConnectionMessage]) -> float:
        """One round of the connection task: its inbox, then its timers; returns now."""
        conn = handle.conn
        handle.kicked = False
        now = trio.current_time()
        for message in messages:
            if isinstance(message, Segments):
                conn.on_segments(message.items, now)
            elif isinstance(message, ConnectionIcmp):
                self._apply_icmp(conn, message.report, now)
        timer = conn.get_timer()
        if timer is not None and timer <= now:
            conn.handle_timer(now)
        if handle.listener is not None and conn.state not in (SYN_RECEIVED, CLOSED):
            if self.demux.established(conn, handle.listener):
                handle.listener.handle._wake()
            handle.listener = None
        return now

    def datagrams(self, conn: TcpConnection) -> list[OutDatagram]:
        """Take the machine's segments as IPv4 datagrams."""
        out = conn.take_segments()
        # Larger than the MTU only as a super-segment for the device to cut (TSO).
        gso_mtu = conn.gso_mtu or 65535
        src, dst = conn.local_ip, conn.remote_ip
        return [
            OutDatagram(
                dst,
                wtcp.PROTO_TCP,
                seg,
                src=src,
                dont_fragment=True,
                segmented=len(seg) + 20 > gso_mtu,
            )
            for seg in out
        ]

    def _apply_icmp(self, conn: TcpConnection, report: IcmpErrorReport, now: float) -> None:
        path_mtu = None
        if report.frag_needed:
            try:
                path_mtu = self.network.path_mtu(conn.remote_ip)
            except NoRouteError:  # no route back: nothing to resize
                return
        if conn.on_icmp_error(report, path_mtu, now):
            self.demux.counters.incr("icmp_errors")


__all__ = [
    "ESTABLISHED",
    "ConnectionHandle",
    "TcpLayer",
    "TcpStatistics",
    "connection_statistics",
    "connection_totals",
]
