"""Ethernet input classification: which frames are ours and which layer takes them."""

from __future__ import annotations

from ..wire import ethernet
from ..wire.errors import ParseError
from .counters import Counters

KIND_IPV4 = 1
KIND_ARP = 2


class EthernetInput:
    """Accepts frames to our MAC, broadcast and multicast; counts the rest by reason."""

    def __init__(self, mac: bytes) -> None:
        self.mac = mac
        self.counters = Counters()

    def classify_untrusted(self, frame: bytes | memoryview) -> tuple[int, memoryview] | None:
        counters = self.counters
        try:
            header, payload = ethernet.parse_untrusted(frame)
        except ParseError as exc:
            counters.incr(exc.reason)
            return None
        dst = header.dst
        # Unicast to someone else: a promiscuous AF_PACKET socket sees the whole segment.
        if dst != self.mac and not dst[0] & 1:
            counters.incr("not_for_us")
            return None
        if header.src == self.mac:
            counters.incr("own_frame")
            return None
        if header.src[0] & 1:
            counters.incr("bad_source_mac")  # IEEE 802.3: a source is never a group address
            return None
        ethertype = header.ethertype
        if ethertype == ethernet.ETHERTYPE_IPV4:
            return KIND_IPV4, payload
        if ethertype == ethernet.ETHERTYPE_ARP:
            return KIND_ARP, payload
        counters.incr("unsupported_ethertype")
        return None
