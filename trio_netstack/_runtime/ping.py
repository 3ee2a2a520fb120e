"""ICMP echo from the API: :class:`Pinger` sessions and the :func:`ping` helper."""

from __future__ import annotations

import math
import struct
from types import TracebackType

import attrs
import trio

from ..proto.icmp import EchoReply
from ..wire import icmp as wicmp
from ..wire import ipv4 as wip
from ..wire.addr import ip_to_str
from .events import PingEvent
from .names import resolve_ipv4_literal
from .stack import Stack, current_stack

_STAMP = struct.Struct("!d")
#: The largest echo payload in one IPv4 datagram (65507).
MAX_PAYLOAD = wip.MAX_PACKET - wip.MIN_HEADER_LEN - wicmp.HEADER_LEN


@attrs.frozen
class PingReply:
    address: str
    seq: int
    ttl: int
    size: int  # ICMP payload bytes received
    rtt: float  # seconds


@attrs.frozen
class PingError:
    """An ICMP error that answered one of our requests (or a local ARP failure)."""

    address: str  # who reported it
    seq: int
    type: int
    code: int

    @property
    def description(self) -> str:
        return describe_icmp_error(self.type, self.code)


def describe_icmp_error(mtype: int, code: int) -> str:
    """The wording iputils ping uses."""
    if mtype == wicmp.DEST_UNREACHABLE:
        return {
            wicmp.UNREACH_NET: "Destination Net Unreachable",
            wicmp.UNREACH_HOST: "Destination Host Unreachable",
            wicmp.UNREACH_PROTOCOL: "Destination Protocol Unreachable",
            wicmp.UNREACH_PORT: "Destination Port Unreachable",
            wicmp.UNREACH_FRAG_NEEDED: "Frag needed",
        }.get(code, f"Dest Unreachable, Bad Code: {code}")
    if mtype == wicmp.TIME_EXCEEDED:
        return "Time to live exceeded" if code == 0 else "Frag reassembly time exceeded"
    if mtype == wicmp.PARAMETER_PROBLEM:
        return "Parameter problem"
    return f"ICMP type {mtype} code {code}"


class Pinger:
    """An echo session with one identifier: send requests, receive answers in any order.

    Use as ``async with Pinger(dst) as p: await p.send(seq); event = await p.receive()``.
    """

    def __init__(
        self, host: str, *, size: int = 56, ttl: int | None = None, stack: Stack | None = None
    ) -> None:
        if not 0 <= size <= MAX_PAYLOAD:
            raise ValueError(f"payload size {size} out of range 0..{MAX_PAYLOAD}")
        if ttl is not None and not 1 <= ttl <= 255:
            raise ValueError(f"TTL {ttl} out of range 1..255")  # RFC 1122 3.2.1.7: never 0
        self.stack = stack or current_stack()
        self.dst = resolve_ipv4_literal(host)
        self.size = size
        self.ttl = ttl
        self._send, self._recv = trio.open_memory_channel[PingEvent](self.stack.config.pinger_queue)
        self.ident = self.stack.icmp.register_pinger(self._send)
        self._sent_at: dict[int, float] = {}

    def _payload(self, now: float) -> bytes:
        # iputils layout: a timestamp then the byte pattern 0x08, 0x09, ... (ours carries
        # Trio's clock so replies can be timed even if they arrive out of order).
        if self.size < _STAMP.size:
            return bytes(range(8, 8 + self.size))
        pattern = bytes((i + 8) & 0xFF for i in range(self.size - _STAMP.size))
        return _STAMP.pack(now) + pattern

    async def send(self, seq: int) -> None:
        """Send request ``seq``; raises NoRouteError (no route) or OSError(EMSGSIZE)."""
        self.stack.ip.route(self.dst)  # NoRouteError here, in the caller
        now = trio.current_time()
        self._sent_at[seq & 0xFFFF] = now
        datagram = self.stack.icmp.echo_request(
            self.dst, self.ident, seq & 0xFFFF, self._payload(now), self.ttl
        )
        await self.stack.ip.send_datagrams([datagram])

    async def receive(self, deadline: float = math.inf) -> PingReply | PingError | None:
        """The next reply or error for this session, or None when ``deadline`` passes."""
        with trio.move_on_at(deadline):
            while True:
                event = await self._recv.receive()
                if isinstance(event, EchoReply):
                    if event.src != self.dst:
                        continue  # another host answering our identifier: not ours
                    sent = self._sent_at.get(event.seq)
                    if sent is None:
                        continue
                    return PingReply(
                        ip_to_str(event.src),
                        event.seq,
                        event.ttl,
                        len(event.payload),
                        event.received_at - sent,
                    )
                seq = event.echo_seq
                if seq is not None and event.original.dst == self.dst:
                    return PingError(ip_to_str(event.reporter), seq, event.type, event.code)
        return None

    def close(self) -> None:
        self.stack.icmp.unregister_pinger(self.ident)
        self._send.close()

    async def __aenter__(self) -> Pinger:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@attrs.frozen
class PingResult:
    transmitted: int
    replies: tuple[PingReply, ...]
    errors: tuple[PingError, ...]

    @property
    def received(self) -> int:
        return len(self.replies)


async def ping(
    host: str,
    *,
    count: int = 1,
    interval: float = 1.0,
    timeout: float = 1.0,
    size: int = 56,
    ttl: int | None = None,
    stack: Stack | None = None,
) -> PingResult:
    """Send ``count`` echo requests, ``interval`` apart; wait ``timeout`` after the last.

    Duplicate replies are counted once. Raises NoRouteError before sending when
    there is no route.
    """
    replies: dict[int, PingReply] = {}
    errors: list[PingError] = []
    async with Pinger(host, size=size, ttl=ttl, stack=stack) as pinger:
        start = trio.current_time()
        for seq in range(1, count + 1):
            await pinger.send(seq)
            until = start + seq * interval if seq < count else trio.current_time() + timeout
            while True:
                event = await pinger.receive(until)
                if event is None:
                    break
                if isinstance(event, PingReply):
                    replies.setdefault(event.seq, event)
                else:
                    errors.append(event)
                if seq == count and len(replies) + len(errors) >= count:
                    break
    return PingResult(count, tuple(replies[s] for s in sorted(replies)), tuple(errors))
