"""Network devices the stack can own: TAP, AF_PACKET, in-memory, and wrappers."""

from .base import RX_CSUM_TRUSTED, DeviceCapabilities, Link, LinkError, LinkStatistics, RxFrame
from .impair import ImpairedLink, Impairment
from .memory import MemoryHub, MemoryLink, memory_link_pair
from .netns import in_netns
from .packet import PacketLink, open_packet
from .pcap import PcapLink, PcapWriter, read_pcap
from .tap import TapLink, open_tap

__all__ = [
    "RX_CSUM_TRUSTED",
    "DeviceCapabilities",
    "ImpairedLink",
    "Impairment",
    "Link",
    "LinkError",
    "LinkStatistics",
    "MemoryHub",
    "MemoryLink",
    "PacketLink",
    "PcapLink",
    "PcapWriter",
    "RxFrame",
    "TapLink",
    "in_netns",
    "memory_link_pair",
    "open_packet",
    "open_tap",
    "read_pcap",
]
