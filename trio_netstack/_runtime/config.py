"""Stack-wide configuration values (attrs, immutable)."""

from __future__ import annotations

import attrs

from ..proto.arp import ArpConfig
from ..proto.ipv4 import Ipv4Config
from ..proto.ratelimit import RateLimitConfig
from ..proto.tcp.connection import TcpConfig
from ..proto.tcp.demux import DemuxConfig


@attrs.frozen
class StackConfig:
    """Every limit of the stack in one place; each has a safe default."""

    arp: ArpConfig = ArpConfig()
    ipv4: Ipv4Config = Ipv4Config()
    icmp_rate_limit: RateLimitConfig = RateLimitConfig()
    tcp: TcpConfig = TcpConfig()
    tcp_demux: DemuxConfig = DemuxConfig()
    #: messages (each a batch of packets) queued between two layer tasks
    layer_queue: int = 256
    #: echo replies buffered per open pinger before they are dropped
    pinger_queue: int = 256
    #: seconds open_stack() lets TCP finish closing (FINs sent and acknowledged) on exit
    shutdown_linger: float = 1.0
