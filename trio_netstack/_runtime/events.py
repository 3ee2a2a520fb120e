"""The messages layer tasks send each other: small slotted classes, one per kind.

Each carries a batch (one wake-up moves many packets). A consumer tells them
apart by class, so a message can only carry what its kind holds; the types are
checked by mypy where strings and positional tuples were not.
"""

from __future__ import annotations

from ..proto.icmp import EchoReply, IcmpErrorReport
from ..proto.ipv4 import Delivery, IcmpRequest
from ..wire.tcp import TcpSegment


class Received:
    """IPv4 payloads of frames one interface received (link_rx to the IPv4 task)."""

    __slots__ = ("ifindex", "items")

    def __init__(self, ifindex: int, items: list[tuple[memoryview, int]]) -> None:
        self.ifindex = ifindex
        self.items = items  # (payload, link RX flags)


class ArpInput:
    """ARP packets one interface received (link_rx to its ethernet task)."""

    __slots__ = ("items",)

    def __init__(self, items: list[memoryview]) -> None:
        self.items = items


class Transmit:
    """Frames the device could not take at once (to the interface's ethernet task)."""

    __slots__ = ("frames",)

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames


class Kick:
    """Wake a task to look at its machine (its timers, or output made elsewhere)."""

    __slots__ = ()


KICK = Kick()


class Deliveries:
    """Datagrams for a local protocol (the IPv4 task to ICMP, UDP or TCP)."""

    __slots__ = ("items",)

    def __init__(self, items: list[Delivery]) -> None:
        self.items = items


class IcmpReports:
    """ICMP errors about datagrams a transport sent (ICMP to UDP or TCP)."""

    __slots__ = ("items",)

    def __init__(self, items: list[IcmpErrorReport]) -> None:
        self.items = items


class IcmpRequests:
    """Errors a layer wants reported about datagrams it received (to ICMP)."""

    __slots__ = ("items",)

    def __init__(self, items: list[IcmpRequest]) -> None:
        self.items = items


class HostUnreachable:
    """Our own packets ARP gave up on (an ethernet task to ICMP, RFC 1122 3.2.2.1)."""

    __slots__ = ("packets",)

    def __init__(self, packets: list[bytes]) -> None:
        self.packets = packets


#: What a layer's inbox carries.
LayerMessage = (
    Received
    | ArpInput
    | Transmit
    | Kick
    | Deliveries
    | IcmpReports
    | IcmpRequests
    | HostUnreachable
)


class Segments:
    """Segments for one connection task (the TCP layer to a connection)."""

    __slots__ = ("items",)

    def __init__(self, items: list[TcpSegment]) -> None:
        self.items = items


class ConnectionIcmp:
    """An ICMP error for one connection task."""

    __slots__ = ("report",)

    def __init__(self, report: IcmpErrorReport) -> None:
        self.report = report


#: What a connection task's inbox carries.
ConnectionMessage = Segments | ConnectionIcmp | Kick

#: What an open ``Pinger`` receives.
PingEvent = EchoReply | IcmpErrorReport

__all__ = [
    "KICK",
    "ArpInput",
    "ConnectionIcmp",
    "ConnectionMessage",
    "Deliveries",
    "HostUnreachable",
    "IcmpReports",
    "IcmpRequests",
    "Kick",
    "LayerMessage",
    "PingEvent",
    "Received",
    "Segments",
    "Transmit",
]
