"""trio_netstack: a user-space TCP/IP stack in Python on Trio.

Use it like Trio::

    async with trio_netstack.open_stack(tap="tap0", ip="192.0.2.2/24") as stack:
        result = await trio_netstack.ping("192.0.2.1", count=3)
"""

from ._runtime.config import StackConfig
from ._runtime.ping import Pinger, PingError, PingReply, PingResult, ping
from ._runtime.stack import Stack, StackStatistics, current_stack, open_stack
from ._runtime.tcp import TcpStatistics
from ._runtime.tcp_api import (
    TcpListener,
    TcpStream,
    connect_tcp,
    open_tcp_listeners,
    open_tcp_stream,
    serve_tcp,
)
from ._runtime.udp import UdpSocket, UdpSocketStatistics
from ._runtime.udp_api import open_udp_socket
from .link.base import LinkError
from .proto.arp import ArpConfig
from .proto.ipv4 import Ipv4Config
from .proto.pmtu import PmtuConfig
from .proto.ratelimit import RateLimitConfig
from .proto.reassembly import ReassemblyConfig
from .proto.route import NoRouteError
from .proto.tcp.connection import Keepalive, TcpConfig

__version__ = "0.1.0"

__all__ = [
    "ArpConfig",
    "Ipv4Config",
    "Keepalive",
    "LinkError",
    "NoRouteError",
    "PingError",
    "PingReply",
    "PingResult",
    "Pinger",
    "PmtuConfig",
    "RateLimitConfig",
    "ReassemblyConfig",
    "Stack",
    "StackConfig",
    "StackStatistics",
    "TcpConfig",
    "TcpListener",
    "TcpStatistics",
    "TcpStream",
    "UdpSocket",
    "UdpSocketStatistics",
    "connect_tcp",
    "current_stack",
    "open_stack",
    "open_tcp_listeners",
    "open_tcp_stream",
    "open_udp_socket",
    "ping",
    "serve_tcp",
]
