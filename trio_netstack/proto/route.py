"""Interfaces and the IPv4 routing table (RFC 1122 3.3.1: a host's route choice)."""

from __future__ import annotations

import errno

import attrs

from ..wire.addr import LIMITED_BROADCAST, ip_to_str, prefix_mask

ROUTE_CACHE_ENTRIES = 4096


class NoRouteError(OSError):
    """No route to a destination: ``OSError(ENETUNREACH)`` with an actionable message."""

    def __init__(self, dst: int, why: str) -> None:
        super().__init__(errno.ENETUNREACH, f"no route to {ip_to_str(dst)}: {why}")
        self.dst = dst


@attrs.frozen
class Interface:
    """An address configured on the stack's link."""

    address: int
    prefix_len: int

    @property
    def mask(self) -> int:
        return prefix_mask(self.prefix_len)

    @property
    def network(self) -> int:
        return self.address & self.mask

    @property
    def broadcast(self) -> int:
        """The directed broadcast address (RFC 919, RFC 922) of the subnet."""
        return self.network | (~self.mask & 0xFFFFFFFF)


@attrs.frozen
class Route:
    network: int
    prefix_len: int
    gateway: int | None  # None: directly connected
    source: int  # preferred source address
    mtu: int

    def matches(self, dst: int) -> bool:
        return dst & prefix_mask(self.prefix_len) == self.network


@attrs.frozen
class RouteResult:
    next_hop: int  # the neighbour to resolve (LIMITED_BROADCAST for broadcasts)
    source: int
    mtu: int
    broadcast: bool


class RouteTable:
    """Longest-prefix routes over one interface, with an optional default gateway."""

    def __init__(self, mtu: int) -> None:
        self.mtu = mtu
        self.interfaces: list[Interface] = []
        self._routes: list[Route] = []
        # Looked up for every packet: kept as sets, rebuilt when an address changes.
        self._local: frozenset[int] = frozenset()
        self._broadcasts: frozenset[int] = frozenset({LIMITED_BROADCAST})
        # Results by destination: a lookup scans the table and builds a result per
        # packet otherwise. Cleared on every change and when full (bounded, so a scan
        # of many destinations cannot grow it; Linux dropped its unbounded route cache
        # for that reason).
        self._cache: dict[int, RouteResult] = {}

    def _addresses_changed(self) -> None:
        self._cache.clear()
        self._local = frozenset(i.address for i in self.interfaces)
        self._broadcasts = frozenset(
            {LIMITED_BROADCAST} | {i.broadcast for i in self.interfaces if i.prefix_len < 31}
        )

    def add_interface(self, iface: Interface) -> None:
        self.interfaces.append(iface)
        self._routes.append(Route(iface.network, iface.prefix_len, None, iface.address, self.mtu))
        self._sort()
        self._addresses_changed()

    def remove_interface(self, address: int) -> None:
        self.interfaces = [i for i in self.interfaces if i.address != address]
        self._routes = [r for r in self._routes if r.source != address]
        self._addresses_changed()

    def add_route(self, network: int, prefix_len: int, gateway: int | None) -> None:
        """Add a route via ``gateway`` (must be on a connected network)."""
        mask = prefix_mask(prefix_len)
        if network & mask != network:
            raise ValueError(f"{ip_to_str(network)}/{prefix_len} has host bits set")
        source = self._connected_source(gateway) if gateway is not None else None
        if source is None:
            if gateway is not None:
                raise ValueError(f"gateway {ip_to_str(gateway)} is not on a connected network")
            if not self.interfaces:
                raise ValueError("add an address before adding routes")
            source = self.interfaces[0].address
        self._routes = [
            r
            for r in self._routes
            if not (r.network == network and r.prefix_len == prefix_len and r.gateway is not None)
        ]
        self._routes.append(Route(network, prefix_len, gateway, source, self.mtu))
        self._sort()

    def set_default_gateway(self, gateway: int | None) -> None:
        self._routes = [r for r in self._routes if not (r.prefix_len == 0 and r.gateway)]
        self._cache.clear()
        if gateway is not None:
            self.add_route(0, 0, gateway)

    @property
    def default_gateway(self) -> int | None:
        for r in self._routes:
            if r.prefix_len == 0 and r.gateway is not None:
                return r.gateway
        return None

    def routes(self) -> list[Route]:
        return list(self._routes)

    def _connected_source(self, ip: int) -> int | None:
        for iface in self.interfaces:
            if ip & iface.mask == iface.network:
                return iface.address
        return None

    def _sort(self) -> None:
        self._cache.clear()
        self._routes.sort(key=lambda r: r.prefix_len, reverse=True)

    def is_local(self, dst: int) -> bool:
        return dst in self._local

    def is_broadcast(self, dst: int) -> bool:
        return dst in self._broadcasts

    def lookup(self, dst: int) -> RouteResult:
        """Choose the next hop and source for ``dst``; raises :class:`NoRouteError`."""
        found = self._cache.get(dst)
        if found is None:
            found = self._lookup(dst)
            if len(self._cache) >= ROUTE_CACHE_ENTRIES:
                self._cache.clear()
            self._cache[dst] = found
        return found

    def _lookup(self, dst: int) -> RouteResult:
        if dst == LIMITED_BROADCAST:
            # RFC 1122 3.3.6: limited broadcast goes out on the link as a broadcast.
            if not self.interfaces:
                raise NoRouteError(dst, "no address configured")
            return RouteResult(LIMITED_BROADCAST, self.interfaces[0].address, self.mtu, True)
        for route in self._routes:
            if route.matches(dst):
                if route.gateway is None:
                    if self.is_broadcast(dst):
                        return RouteResult(LIMITED_BROADCAST, route.source, route.mtu, True)
                    return RouteResult(dst, route.source, route.mtu, False)
                return RouteResult(route.gateway, route.source, route.mtu, False)
        if not self.interfaces:
            raise NoRouteError(dst, "no address configured")
        raise NoRouteError(dst, "no gateway configured")
