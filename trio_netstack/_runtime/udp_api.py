"""Opening UDP sockets on the current stack."""

from __future__ import annotations

import errno

from .names import resolve_ipv4_literal
from .stack import Stack, current_stack
from .udp import UdpSocket


def open_udp_socket(
    local_address: str | None = None,
    local_port: int = 0,
    *,
    broadcast: bool = False,
    receive_queue: int = 256,
    interface: str | int | None = None,
    stack: Stack | None = None,
) -> UdpSocket:
    """Bind a UDP socket on the current stack (port 0: an ephemeral port).

    ``interface`` (a name or index) binds the socket to one interface, like Linux's
    SO_BINDTODEVICE: it receives only what arrives there and sends out of it, from
    0.0.0.0 while the interface has no address (what a DHCP client needs).
    Raises ``OSError(EADDRINUSE)`` when the port is taken. Use it as
    ``async with open_udp_socket(...) as sock`` or call ``close()``.
    """
    owner = stack or current_stack()
    local_ip = resolve_ipv4_literal(local_address) if local_address else 0
    if local_ip and not owner.ip.is_local(local_ip):
        raise OSError(errno.EADDRNOTAVAIL, f"{local_address} is not an address of this stack")
    ifindex = owner.interface(interface).ifindex if interface is not None else 0
    return UdpSocket(
        owner.udp,
        local_ip,
        local_port,
        broadcast=broadcast,
        queue=receive_queue,
        ifindex=ifindex,
    )
