"""What a transport (ICMP, UDP, TCP) sees of the IP layer: routes and a send path.

As gVisor's transports see a route and never the stack, ours get this narrow
Protocol and nothing else: a layer can be built and tested over any object
that has it (``tests/runtime/test_layers.py`` does, without a ``Stack``).
"""

from __future__ import annotations

from typing import Protocol

from ..link.base import Link
from ..proto.ipv4 import IcmpRequest, OutDatagram
from ..proto.route import RouteResult
from .channels import AlarmClock, Mailbox
from .events import LayerMessage


class Network(Protocol):
    """The IP layer as a transport uses it."""

    @property
    def clock(self) -> AlarmClock:
        """The stack's alarm clock (for the transport's mailboxes)."""
        ...

    @property
    def default_mtu(self) -> int:
        """The first interface's MTU (for a peer we have no route to)."""
        ...

    def register(self, protocol: int, name: str, inbox: Mailbox[LayerMessage]) -> None:
        """Deliver datagrams of IP ``protocol`` (and ICMP errors about it) to ``inbox``."""

    def route(self, dst: int, oif: int | None = None) -> RouteResult:
        """The route towards ``dst``; raises ``NoRouteError`` in the caller."""
        ...

    def path_mtu(self, dst: int) -> int:
        """The route's MTU lowered by path MTU discovery; raises ``NoRouteError``."""
        ...

    def is_local(self, address: int) -> bool:
        """Whether ``address`` is one of the stack's own."""
        ...

    def link_of(self, ifindex: int) -> Link:
        """The device of an interface (its offload capabilities, its MTU)."""
        ...

    def request_icmp(self, requests: list[IcmpRequest]) -> None:
        """Ask ICMP, without blocking, to report errors about received datagrams."""

    async def send_datagrams(self, datagrams: list[OutDatagram]) -> None:
        """Send from an application's call: a Trio checkpoint."""

    async def queue_datagrams(self, datagrams: list[OutDatagram]) -> None:
        """Send from a layer task: waits only while a device backlog is full."""

    def can_transmit_now(self) -> bool:
        """Nothing waits for a device: :meth:`transmit_nowait` may be used."""
        ...

    def transmit_nowait(self, datagrams: list[OutDatagram]) -> None:
        """Send without waiting (drops and counts when even the backlog is full)."""
