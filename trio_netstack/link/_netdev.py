"""Tiny interface queries by ioctl (index, flags, MTU, MAC).

An ioctl answers about the network namespace of the socket it is issued on, so
callers create the socket inside ``in_netns()``. One ioctl is one syscall; the
netlink alternative (pyroute2's IPRoute) spins up an asyncio loop per object and,
given a namespace name, forks a helper process, which is a poor fit for opening a
device from inside a running Trio program.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import time

__all__ = [
    "ARPHRD_ETHER",
    "IFF_PROMISC",
    "IFF_RUNNING",
    "IFF_UP",
    "IFNAMSIZ",
    "bring_up",
    "check_ifname",
    "control_socket",
    "get_flags",
    "get_hwaddr",
    "get_ifindex",
    "get_mtu",
    "wait_running",
]

# <linux/sockios.h>
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_SIOCGIFMTU = 0x8921
_SIOCGIFHWADDR = 0x8927
_SIOCGIFINDEX = 0x8933

# <linux/if.h>
IFNAMSIZ = 16
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_PROMISC = 0x100

# <linux/if_arp.h>
ARPHRD_ETHER = 1

# struct ifreq is 16 bytes of name followed by a 24-byte union (40 bytes on x86-64
# and every other 64-bit Linux ABI); pad every request to that size so the kernel
# never reads past our buffer.
_IFREQ_SIZE = 40


def check_ifname(name: str) -> bytes:
    """The name as the kernel wants it, or ValueError when it cannot be a device name."""
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ or b"/" in raw or b"\0" in raw or raw.isspace():
        raise ValueError(f"invalid interface name {name!r} (1-{IFNAMSIZ - 1} bytes, no '/')")
    return raw


def control_socket() -> socket.socket:
    """A socket to issue interface ioctls on, in the calling thread's namespace."""
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)


def _ifreq(name: str, payload: bytes = b"") -> bytearray:
    req = bytearray(_IFREQ_SIZE)
    raw = check_ifname(name)
    req[: len(raw)] = raw
    req[IFNAMSIZ : IFNAMSIZ + len(payload)] = payload
    return req


def _call(sock: socket.socket, request: int, req: bytearray) -> bytearray:
    fcntl.ioctl(sock.fileno(), request, req, True)
    return req


def get_ifindex(sock: socket.socket, name: str) -> int:
    """Interface index; OSError(ENODEV) when there is no such interface."""
    req = _call(sock, _SIOCGIFINDEX, _ifreq(name))
    return int(struct.unpack_from("i", req, IFNAMSIZ)[0])


def get_flags(sock: socket.socket, name: str) -> int:
    req = _call(sock, _SIOCGIFFLAGS, _ifreq(name))
    return int(struct.unpack_from("H", req, IFNAMSIZ)[0])


def bring_up(sock: socket.socket, name: str) -> bool:
    """Set IFF_UP if it is not set; True when the interface had to be brought up."""
    flags = get_flags(sock, name)
    if flags & IFF_UP:
        return False
    _call(sock, _SIOCSIFFLAGS, _ifreq(name, struct.pack("H", flags | IFF_UP)))
    return True


def wait_running(sock: socket.socket, name: str, timeout: float = 2.0) -> bool:
    """Wait (blocking, bounded by ``timeout``) until the interface is IFF_RUNNING.

    When a device gains its carrier (a TAP when we attach, a veth when its peer
    comes up) the kernel only starts transmitting on it once the linkwatch worker
    has run: until then its qdisc is the "noop" one and every frame the kernel
    sends there is dropped (counted as TX dropped). The worker sets the operstate
    that IFF_RUNNING reports and activates the qdisc in the same step, normally
    within a millisecond. Without this wait the kernel's answer to the first
    frames we send is lost about one time in three on this machine.
    Returns False on timeout (e.g. a NIC without a cable); callers carry on.
    """
    deadline = time.monotonic() + timeout
    pause = 0.0001
    while not get_flags(sock, name) & IFF_RUNNING:
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
    return True


def get_mtu(sock: socket.socket, name: str) -> int:
    req = _call(sock, _SIOCGIFMTU, _ifreq(name))
    return int(struct.unpack_from("i", req, IFNAMSIZ)[0])


def get_hwaddr(sock: socket.socket, name: str) -> tuple[int, bytes]:
    """(ARPHRD_* type, 6-byte address) of the interface."""
    req = _call(sock, _SIOCGIFHWADDR, _ifreq(name))
    family, addr = struct.unpack_from("H6s", req, IFNAMSIZ)
    return int(family), bytes(addr)
