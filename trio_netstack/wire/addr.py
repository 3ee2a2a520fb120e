"""Address helpers: IPv4 addresses are ``int`` inside the stack, MACs are 6 ``bytes``.

Integers make routing (masking, prefix match) and dictionary keys cheap; the
conversions live here so that strings appear only at the edges.
"""

from __future__ import annotations

import functools
import ipaddress

from .errors import ParseError

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
LIMITED_BROADCAST = 0xFFFFFFFF


@functools.lru_cache(maxsize=1024)  # per-datagram on UDP send_to: ipaddress costs ~4 us
def ip_from_str(text: str) -> int:
    """'192.0.2.1' -> int. Raises ValueError on anything else."""
    return int(ipaddress.IPv4Address(text))


@functools.lru_cache(maxsize=1024)  # per-datagram on UDP receive_from
def ip_to_str(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def mac_from_str(text: str) -> bytes:
    """'02:00:00:aa:bb:cc' (or with '-') -> 6 bytes. Raises ValueError."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r} (expected like 02:00:00:00:00:01)")
    return bytes(int(p, 16) for p in parts)


def mac_to_str(value: bytes) -> str:
    return ":".join(f"{b:02x}" for b in value)


def prefix_mask(prefix_len: int) -> int:
    return (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF if prefix_len else 0


def is_multicast(ip: int) -> bool:
    return (ip >> 28) == 0xE  # 224.0.0.0/4 (RFC 5771)


def is_loopback(ip: int) -> bool:
    return (ip >> 24) == 127


def multicast_mac(ip: int) -> bytes:
    """RFC 1112 6.4: 01:00:5e followed by the low 23 bits of the group address."""
    return bytes((0x01, 0x00, 0x5E, (ip >> 16) & 0x7F, (ip >> 8) & 0xFF, ip & 0xFF))


def check_mac(value: bytes) -> bytes:
    if len(value) != 6:
        raise ParseError("bad_mac", f"{len(value)} bytes")
    return value
