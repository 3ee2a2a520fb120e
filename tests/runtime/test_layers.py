"""Each transport layer runs over any ``Network`` (transport.py), without a Stack.

A fake IP layer records what the layer sends and lets the test feed it datagrams,
so a layer's task, its sockets or streams and its machines are exercised alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from trio_netstack._runtime.channels import AlarmClock, Mailbox
from trio_netstack._runtime.config import StackConfig
from trio_netstack._runtime.events import Deliveries, LayerMessage
from trio_netstack._runtime.tcp import TcpLayer
from trio_netstack._runtime.tcp_api import TcpStream
from trio_netstack._runtime.udp import UdpLayer, UdpSocket
from trio_netstack.link.base import Link
from trio_netstack.link.memory import memory_link_pair
from trio_netstack.proto.ipv4 import Delivery, IcmpRequest, OutDatagram
from trio_netstack.proto.route import NoRouteError, RouteResult
from trio_netstack.wire import ipv4 as wip
from trio_netstack.wire import tcp as wtcp
from trio_netstack.wire import udp as wudp
from trio_netstack.wire.addr import ip_from_str

ME = ip_from_str("192.0.2.2")
PEER = ip_from_str("192.0.2.1")


class FakeNetwork:
    """Implements ``transport.Network``: one connected /24, everything sent recorded."""

    def __init__(self) -> None:
        self._clock = AlarmClock()
        self.inboxes: dict[int, Mailbox[LayerMessage]] = {}
        self.sent: list[OutDatagram] = []
        self.icmp_requests: list[IcmpRequest] = []
        self.link, self._peer = memory_link_pair()
        self.arrived = trio.Event()

    @property
    def clock(self) -> AlarmClock:
        return self._clock

    @property
    def default_mtu(self) -> int:
        return 1500

    def register(self, protocol: int, name: str, inbox: Mailbox[LayerMessage]) -> None:
        self.inboxes[protocol] = inbox

    def route(self, dst: int, oif: int | None = None) -> RouteResult:
        if dst >> 8 != ME >> 8:
            raise NoRouteError(dst, "no gateway configured")
        return RouteResult(dst, ME, 1500, False, 1)

    def path_mtu(self, dst: int) -> int:
        return self.route(dst).mtu

    def is_local(self, address: int) -> bool:
        return address == ME

    def link_of(self, ifindex: int) -> Link:
        return self.link

    def request_icmp(self, requests: list[IcmpRequest]) -> None:
        self.icmp_requests.extend(requests)

    async def send_datagrams(self, datagrams: list[OutDatagram]) -> None:
        await trio.lowlevel.checkpoint()
        self.transmit_nowait(datagrams)

    async def queue_datagrams(self, datagrams: list[OutDatagram]) -> None:
        self.transmit_nowait(datagrams)

    def can_transmit_now(self) -> bool:
        return True

    def transmit_nowait(self, datagrams: list[OutDatagram]) -> None:
        self.sent.extend(datagrams)
        self.arrived.set()

    async def next_sent(self) -> OutDatagram:
        while not self.sent:
            self.arrived = trio.Event()
            await self.arrived.wait()
        return self.sent.pop(0)

    def deliver(self, protocol: int, src: int, payload: bytes) -> None:
        header = wip.Ipv4Header(0, 20 + len(payload), 1, 0, 64, protocol, 0, src, ME)
        delivery = Delivery(header, memoryview(payload), 0, False, 1)
        assert self.inboxes[protocol].put_nowait(Deliveries([delivery]))


@asynccontextmanager
async def running(layer_run: object, network: FakeNetwork) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(network.clock.run)
        await nursery.start(layer_run)  # type: ignore[arg-type]
        yield
        nursery.cancel_scope.cancel()


async def test_udp_layer_alone(autojump_clock: trio.abc.Clock) -> None:
    network = FakeNetwork()
    layer = UdpLayer(network, StackConfig(), seed=1)
    async with running(layer.run, network):
        sock = UdpSocket(layer, 0, 5000, broadcast=False, queue=4)
        network.deliver(17, PEER, wudp.build(PEER, ME, 40000, 5000, b"hello"))
        assert await sock.receive_from() == (b"hello", ("192.0.2.1", 40000))
        await sock.send_to(b"back", ("192.0.2.1", 40000))
        [sent] = network.sent
        assert (sent.dst, sent.src, sent.protocol) == (PEER, ME, 17)
        # No socket on the port: the layer asks for port unreachable (RFC 1122 4.1.3.1).
        network.deliver(17, PEER, wudp.build(PEER, ME, 40000, 5001, b"nobody"))
        await trio.testing.wait_all_tasks_blocked()
        [request] = network.icmp_requests
        assert (request.type, request.code) == (3, 3)
        sock.close()


async def test_tcp_layer_alone(autojump_clock: trio.abc.Clock) -> None:
    network = FakeNetwork()
    config = StackConfig()
    layer = TcpLayer(network, config, secret=1)
    async with running(layer.run, network):
        handle = layer.open_connection(ME, PEER, 80, 0, config.tcp)
        syn_out = await network.next_sent()
        syn = wtcp.parse_untrusted(syn_out.payload, ME, PEER)
        assert syn.flags == wtcp.SYN and syn.options.mss == 1460
        # The peer answers; the connection is established and sends its ACK.
        reply = wtcp.build(
            PEER, ME, 80, syn.sport, 5000, syn.seq + 1, wtcp.SYN | wtcp.ACK, 65535, mss=1460
        )
        network.deliver(6, PEER, reply)
        ack = wtcp.parse_untrusted((await network.next_sent()).payload, ME, PEER)
        assert ack.flags == wtcp.ACK and ack.ack == 5001
        stream = TcpStream(handle)
        await stream.send_all(b"GET /")
        data = wtcp.parse_untrusted((await network.next_sent()).payload, ME, PEER)
        assert bytes(data.payload) == b"GET /"
        assert stream.statistics().state == "ESTABLISHED"
