"""UDP demultiplexing: the port table, ephemeral ports and ICMP error matching.

Lookup follows Linux's scoring: a socket connected to the sender beats one
bound to the destination address, which beats a wildcard bind. Ephemeral ports
are drawn at random from 32768-60999 (Linux's ip_local_port_range), as RFC 6056
3.3.1 (algorithm 1) recommends, by the picker TCP shares (:mod:`.ports`); the random
source is injected.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs

from ..wire import icmp as wicmp
from ..wire import udp as wudp
from ..wire.addr import ip_to_str
from ..wire.errors import ParseError
from .counters import Counters
from .icmp import IcmpErrorReport
from .ipv4 import Delivery, IcmpRequest
from .ports import pick_ephemeral

H = TypeVar("H")


@attrs.define(slots=True, eq=False)
class Endpoint(Generic[H]):
    """A bound UDP socket as the demultiplexer sees it; ``handle`` is the owner's object."""

    handle: H
    local_ip: int  # 0 = any address
    local_port: int
    remote_ip: int = 0  # 0 = not connected
    remote_port: int = 0
    ifindex: int = 0  # 0 = any interface (else bound to one, like SO_BINDTODEVICE)


@attrs.define(slots=True)
class Received(Generic[H]):
    endpoint: Endpoint[H]
    src: int
    sport: int
    dst: int
    payload: bytes


class UdpDemux(Generic[H]):
    def __init__(self, randrange: Callable[[int, int], int]) -> None:
        self.counters = Counters()
        self._icmp_requests: list[IcmpRequest] = []
        self._ports: dict[int, list[Endpoint[H]]] = {}
        self._randrange = randrange

    # --- binding -------------------------------------------------------------------

    def bind(self, handle: H, local_ip: int, local_port: int) -> Endpoint[H]:
        """Bind; port 0 picks an ephemeral port. Raises OSError(EADDRINUSE)."""
        if local_port == 0:
            local_port = self._ephemeral(local_ip)
        elif not 0 < local_port <= 0xFFFF:
            raise ValueError(f"port {local_port} out of range 1..65535")
        for other in self._ports.get(local_port, ()):
            if other.local_ip == 0 or local_ip in (0, other.local_ip):
                where = ip_to_str(local_ip) if local_ip else "*"
                raise OSError(errno.EADDRINUSE, f"UDP port {where}:{local_port} is in use")
        endpoint = Endpoint(handle, local_ip, local_port)
        self._ports.setdefault(local_port, []).append(endpoint)
        return endpoint

    def unbind(self, endpoint: Endpoint[H]) -> None:
        bound = self._ports.get(endpoint.local_port)
        if bound and endpoint in bound:
            bound.remove(endpoint)
            if not bound:
                del self._ports[endpoint.local_port]

    def _ephemeral(self, local_ip: int) -> int:
        port = pick_ephemeral(self._randrange, lambda port: port not in self._ports)
        if port is None:
            raise OSError(errno.EADDRINUSE, "no free ephemeral UDP port")
        return port

    def lookup(
        self, dst: int, dport: int, src: int, sport: int, ifindex: int = 0
    ) -> Endpoint[H] | None:
        best: Endpoint[H] | None = None
        best_score = -1
        for ep in self._ports.get(dport, ()):
            if ep.local_ip and ep.local_ip != dst:
                continue
            if ep.ifindex and ep.ifindex != ifindex:
                continue
            score = 0
            if ep.local_ip:
                score += 1
            if ep.remote_ip:
                if ep.remote_ip != src or ep.remote_port != sport:
                    continue
                score += 2
            if score > best_score:
                best, best_score = ep, score
        return best

    # --- input ---------------------------------------------------------------------

    def take_icmp_requests(self) -> list[IcmpRequest]:
        out = self._icmp_requests
        if out:  # when empty, no new list (taken every round): do not modify it
            self._icmp_requests = []
        return out

    def input_untrusted(self, delivery: Delivery, trusted: bool) -> Received[H] | None:
        """Demultiplex a datagram; None means dropped (counted) or no socket.

        When there is no socket, ICMP port unreachable is requested (RFC 1122
        4.1.3.1; :meth:`take_icmp_requests`).
        """
        header = delivery.header
        try:
            sport, dport, payload = wudp.parse_untrusted(
                delivery.payload, header.src, header.dst, verify_checksum=not trusted
            )
        except ParseError as exc:
            self.counters.incr(exc.reason)
            return None
        endpoint = self.lookup(header.dst, dport, header.src, sport, delivery.ifindex)
        if endpoint is None:
            self.counters.incr("no_port")
            self._icmp_requests.append(
                IcmpRequest(
                    wicmp.DEST_UNREACHABLE,
                    wicmp.UNREACH_PORT,
                    header,
                    delivery.payload,
                    delivery.broadcast,
                )
            )
            return None
        self.counters.incr("rx_datagrams")
        return Received(endpoint, header.src, sport, header.dst, bytes(payload))

    def match_error(self, report: IcmpErrorReport) -> Endpoint[H] | None:
        """The socket that sent the datagram an ICMP error quotes (RFC 1122 4.1.3.3)."""
        ports = report.quoted_ports
        if ports is None:
            return None
        sport, dport = ports
        original = report.original
        for ep in self._ports.get(sport, ()):
            if ep.local_ip and ep.local_ip != original.src:
                continue
            if ep.remote_ip and (ep.remote_ip != original.dst or ep.remote_port != dport):
                continue
            return ep
        return None
