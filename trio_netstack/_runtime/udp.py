"""UDP sockets and the UDP layer task.

The layer task owns the port table (:class:`~trio_netstack.proto.udp.UdpDemux`),
delivers datagrams into each socket's bounded queue without blocking (a full
queue drops and counts, like a full SO_RCVBUF), asks the ICMP layer for port
unreachable when no socket listens, and hands ICMP errors to the socket that
sent the quoted datagram. Sending builds the datagram in the caller and hands it
to the IPv4 layer, so routing errors surface in the caller.
"""

from __future__ import annotations

import errno
import random
from types import TracebackType

import attrs
import trio

from ..proto.icmp import IcmpErrorReport, error_to_exception
from ..proto.ipv4 import OutDatagram
from ..proto.udp import Endpoint, UdpDemux
from ..wire import ipv4 as wip
from ..wire import udp as wudp
from ..wire.addr import ip_to_str
from .channels import Mailbox, offer
from .config import StackConfig
from .conflict import ConflictDetector
from .events import Deliveries, IcmpReports, LayerMessage
from .names import resolve_ipv4_literal
from .transport import Network

#: The largest UDP payload in one IPv4 datagram (65507).
MAX_PAYLOAD = wip.MAX_PACKET - wip.MIN_HEADER_LEN - wudp.HEADER_LEN

Address = tuple[str, int]
_Item = tuple[bytes, Address] | None  # None only wakes a receiver to see an error


@attrs.frozen
class UdpSocketStatistics:
    local: Address
    remote: Address | None
    datagrams_sent: int
    datagrams_received: int
    bytes_sent: int
    bytes_received: int
    dropped_queue_full: int
    errors_received: int


class UdpSocket:
    """A UDP socket on the stack. Create it with :func:`open_udp_socket`."""

    def __init__(
        self,
        layer: UdpLayer,
        local_ip: int,
        local_port: int,
        *,
        broadcast: bool,
        queue: int,
        ifindex: int = 0,
    ) -> None:
        self._layer = layer
        self._network = layer.network
        self.broadcast = broadcast
        self._send_q, self._recv_q = trio.open_memory_channel[_Item](queue)
        self._endpoint: Endpoint[UdpSocket] = layer.demux.bind(self, local_ip, local_port)
        self._endpoint.ifindex = ifindex
        self._error: OSError | None = None
        self._closed = False
        self._receiving = ConflictDetector("another task is already receiving on this socket")
        self._counts = {
            "sent": 0,
            "received": 0,
            "bytes_sent": 0,
            "bytes_received": 0,
            "dropped": 0,
            "errors": 0,
        }

    # --- addresses -----------------------------------------------------------------

    def getsockname(self) -> Address:
        return (ip_to_str(self._endpoint.local_ip), self._endpoint.local_port)

    def getpeername(self) -> Address:
        if not self._endpoint.remote_ip:
            raise OSError(errno.ENOTCONN, "the UDP socket is not connected")
        return (ip_to_str(self._endpoint.remote_ip), self._endpoint.remote_port)

    async def connect(self, address: Address) -> None:
        """Fix the peer: ``send``/``receive`` use it and ICMP errors are reported."""
        self._check_open()
        dst, port = self._resolve(address)
        self._network.route(dst, self._endpoint.ifindex or None)  # NoRouteError here
        self._endpoint.remote_ip = dst
        self._endpoint.remote_port = port
        self._error = None
        await trio.lowlevel.checkpoint()

    # --- sending ---------------------------------------------------------------------

    async def send_to(self, data: bytes | bytearray | memoryview, address: Address) -> None:
        self._check_open()
        dst, port = self._resolve(address)
        await self._send(data, dst, port)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        if not self._endpoint.remote_ip:
            raise OSError(errno.EDESTADDRREQ, "send() needs connect() first; use send_to()")
        await self._send(data, self._endpoint.remote_ip, self._endpoint.remote_port)

    async def _send(self, data: bytes | bytearray | memoryview, dst: int, port: int) -> None:
        self._raise_pending()
        if len(data) > MAX_PAYLOAD:
            raise OSError(
                errno.EMSGSIZE, f"a UDP payload of {len(data)} bytes exceeds {MAX_PAYLOAD}"
            )
        endpoint = self._endpoint
        oif = endpoint.ifindex or None
        route = self._network.route(dst, oif)  # NoRouteError here, in the caller
        if route.broadcast and not self.broadcast:
            raise PermissionError(
                errno.EACCES, f"sending to broadcast {ip_to_str(dst)} needs broadcast=True"
            )
        # From 0.0.0.0 when the interface has no address yet (RFC 2131 4.1, a DHCP client).
        src = endpoint.local_ip or route.source
        segment = wudp.build(src, dst, endpoint.local_port, port, data)
        await self._network.send_datagrams(
            [OutDatagram(dst, wudp.PROTO_UDP, segment, src=src, oif=oif)]
        )
        self._counts["sent"] += 1
        self._counts["bytes_sent"] += len(data)

    # --- receiving -------------------------------------------------------------------

    async def receive_from(self) -> tuple[bytes, Address]:
        self._check_open()
        with self._receiving:
            while True:
                self._raise_pending()
                try:
                    item = await self._recv_q.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    raise trio.ClosedResourceError("the UDP socket was closed") from None
                if item is not None:
                    return item

    async def receive(self) -> bytes:
        if not self._endpoint.remote_ip:
            raise OSError(errno.ENOTCONN, "receive() needs connect() first; use receive_from()")
        data, _ = await self.receive_from()
        return data

    # --- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._layer.demux.unbind(self._endpoint)
            self._send_q.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> UdpSocket:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> UdpSocket:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def statistics(self) -> UdpSocketStatistics:
        c = self._counts
        remote = None
        if self._endpoint.remote_ip:
            remote = (ip_to_str(self._endpoint.remote_ip), self._endpoint.remote_port)
        return UdpSocketStatistics(
            self.getsockname(),
            remote,
            c["sent"],
            c["received"],
            c["bytes_sent"],
            c["bytes_received"],
            c["dropped"],
            c["errors"],
        )

    # --- used by the layer -----------------------------------------------------------

    def _deliver(self, payload: bytes, src: int, sport: int) -> None:
        if offer(self._send_q, (payload, (ip_to_str(src), sport))):
            self._counts["received"] += 1
            self._counts["bytes_received"] += len(payload)
        else:
            self._counts["dropped"] += 1
            self._layer.demux.counters.incr("socket_queue_full")

    def _deliver_error(self, exc: OSError) -> None:
        self._counts["errors"] += 1
        if self._endpoint.remote_ip:  # like Linux: only connected sockets see errors
            self._error = exc
            offer(self._send_q, None)

    def _raise_pending(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the UDP socket is closed")

    @staticmethod
    def _resolve(address: Address) -> tuple[int, int]:
        host, port = address
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"port {port} out of range 1..65535")
        return resolve_ipv4_literal(host), port


class UdpLayer:
    """The UDP layer task and its port table."""

    def __init__(self, network: Network, config: StackConfig, seed: int) -> None:
        self.network = network
        rng = random.Random(seed)
        self.demux: UdpDemux[UdpSocket] = UdpDemux(rng.randrange)
        self.inbox: Mailbox[LayerMessage] = Mailbox(config.layer_queue)
        network.register(wudp.PROTO_UDP, "udp", self.inbox)

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        demux = self.demux
        task_status.started()
        while True:
            messages = await self.inbox.get_batch()
            for message in messages:
                if isinstance(message, Deliveries):
                    for delivery in message.items:
                        got = demux.input_untrusted(delivery, bool(delivery.flags & 1))
                        if got is not None:
                            got.endpoint.handle._deliver(got.payload, got.src, got.sport)
                elif isinstance(message, IcmpReports):
                    for report in message.items:
                        self._icmp_error(report)
            requests = demux.take_icmp_requests()
            if requests:
                self.network.request_icmp(requests)  # port unreachable (RFC 1122 4.1.3.1)

    def _icmp_error(self, report: IcmpErrorReport) -> None:
        endpoint = self.demux.match_error(report)
        if endpoint is None:
            self.demux.counters.incr("icmp_error_unmatched")
            return
        self.demux.counters.incr("icmp_errors")
        endpoint.handle._deliver_error(
            error_to_exception(report.type, report.code, report.reporter)
        )
