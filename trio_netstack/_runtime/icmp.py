"""The ICMP layer task and the registry of open pingers.

The task feeds :class:`~trio_netstack.proto.icmp.IcmpMachine`: echo requests
it answers, errors other layers asked for (protocol, port and host
unreachable, time exceeded), and ICMP messages received. Echo replies and
errors quoting an echo go to the ``Pinger`` with that identifier; errors about
UDP or TCP go to the layer registered for the quoted protocol, and every error
is shown to the IPv4 machine (path MTU discovery).
"""

from __future__ import annotations

import trio

from ..proto.icmp import IcmpErrorReport, IcmpMachine
from ..proto.ipv4 import OutDatagram
from ..wire import ipv4 as wip
from .channels import Mailbox, offer, send_upward
from .config import StackConfig
from .events import (
    Deliveries,
    HostUnreachable,
    IcmpReports,
    IcmpRequests,
    LayerMessage,
    PingEvent,
)
from .ip import IpLayer


class IcmpLayer:
    def __init__(self, ip: IpLayer, config: StackConfig, secret: int) -> None:
        self.ip = ip
        self.machine = IcmpMachine(config.icmp_rate_limit)
        self.inbox: Mailbox[LayerMessage] = Mailbox(config.layer_queue, ip.clock)
        ip.register(wip.PROTO_ICMP, "icmp", self.inbox)
        self._pingers: dict[int, trio.MemorySendChannel[PingEvent]] = {}
        self._next_echo_id = secret & 0xFFFF

    # --- pingers -------------------------------------------------------------------

    def register_pinger(self, channel: trio.MemorySendChannel[PingEvent]) -> int:
        for _ in range(0x10000):
            self._next_echo_id = (self._next_echo_id + 1) & 0xFFFF
            if self._next_echo_id not in self._pingers:
                self._pingers[self._next_echo_id] = channel
                return self._next_echo_id
        raise OSError("too many concurrent pingers (65536 echo identifiers in use)")

    def unregister_pinger(self, ident: int) -> None:
        self._pingers.pop(ident, None)

    def echo_request(
        self, dst: int, ident: int, seq: int, payload: bytes, ttl: int | None
    ) -> OutDatagram:
        return self.machine.echo_request(dst, ident, seq, payload, ttl=ttl)

    def _to_pinger(self, ident: int, event: PingEvent) -> None:
        channel = self._pingers.get(ident)
        if channel is None:
            self.ip.counters.incr("echo_unclaimed")
            return
        if not offer(channel, event):  # never blocks the ICMP layer
            self.ip.counters.incr("pinger_queue_full")

    # --- the task ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        icmp = self.machine
        inbox = self.inbox
        task_status.started()
        while True:
            messages = await inbox.get_batch()
            now = trio.current_time()
            for message in messages:
                if isinstance(message, Deliveries):
                    for delivery in message.items:
                        icmp.input_untrusted(delivery, now)
                elif isinstance(message, IcmpRequests):
                    for request in message.items:
                        icmp.report(request, now)
                elif isinstance(message, HostUnreachable):
                    for packet in message.packets:
                        icmp.host_unreachable(packet, now)
            for reply in icmp.take_echo_replies():
                self._to_pinger(reply.ident, reply)
            reports = icmp.take_errors()
            if reports:
                self._dispatch_errors(reports, now)
            out = icmp.take_datagrams()
            if out:
                await self.ip.queue_datagrams(out)

    def _dispatch_errors(self, reports: list[IcmpErrorReport], now: float) -> None:
        ipv4 = self.ip.ipv4
        by_protocol: dict[int, list[IcmpErrorReport]] = {}
        for report in reports:
            original = report.original
            ipv4.icmp_error_received(report.type, report.code, original, report.next_hop_mtu, now)
            ident = report.echo_id
            if ident is not None:
                self._to_pinger(ident, report)
            elif original.protocol != wip.PROTO_ICMP and self.ip.handler(original.protocol):
                by_protocol.setdefault(original.protocol, []).append(report)
            else:
                self.ip.counters.incr("icmp_error_unclaimed")
        for protocol, items in by_protocol.items():
            found = self.ip.handler(protocol)
            assert found is not None
            name, box = found
            if not send_upward(box, IcmpReports(items)):
                self.ip.counters.incr(f"{name}_queue_full", len(items))
