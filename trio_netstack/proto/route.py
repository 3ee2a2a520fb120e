"""Interface addresses and the IPv4 routing table (RFC 1122 3.3.1: a host's route choice).

A stack owns several interfaces, each known here by its index (``ifindex``, as
Linux numbers them) and MTU. Addresses belong to an interface; connected routes
follow from them; other routes name a gateway on a connected network, or an
interface. Addresses and routes change at run time (a DHCP lease), so every
lookup structure is rebuilt on change and results are cached, bounded.

The types at this seam carry an address ``family`` so that IPv6 can join the
same tables later; the IPv4 machine uses the ``int`` form of addresses.
"""

from __future__ import annotations

import enum
import errno

import attrs

from ..wire.addr import LIMITED_BROADCAST, ip_to_str, prefix_mask

ROUTE_CACHE_ENTRIES = 4096


class Family(enum.IntEnum):
    """An address family (the IP version number)."""

    IPV4 = 4
    IPV6 = 6


class NoRouteError(OSError):
    """No route to a destination: ``OSError(ENETUNREACH)`` with an actionable message."""

    def __init__(self, dst: int, why: str) -> None:
        super().__init__(errno.ENETUNREACH, f"no route to {ip_to_str(dst)}: {why}")
        self.dst = dst


@attrs.frozen
class IfAddress:
    """An address configured on an interface."""

    ifindex: int
    address: int
    prefix_len: int
    family: Family = Family.IPV4

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

    def __str__(self) -> str:
        return f"{ip_to_str(self.address)}/{self.prefix_len}"


@attrs.frozen
class Route:
    network: int
    prefix_len: int
    gateway: int | None  # None: directly connected
    source: int  # preferred source address (0: the interface has none yet)
    mtu: int
    ifindex: int
    family: Family = Family.IPV4

    def matches(self, dst: int) -> bool:
        return dst & prefix_mask(self.prefix_len) == self.network


@attrs.frozen
class RouteResult:
    next_hop: int  # the neighbour to resolve (LIMITED_BROADCAST for broadcasts)
    source: int
    mtu: int
    broadcast: bool
    ifindex: int


class RouteTable:
    """Longest-prefix routes over the stack's interfaces."""

    def __init__(self) -> None:
        self._mtus: dict[int, int] = {}  # ifindex -> MTU
        self.addresses: list[IfAddress] = []
        self._routes: list[Route] = []
        # Looked up for every packet: kept as sets, rebuilt when an address changes.
        self._local: frozenset[int] = frozenset()
        self._broadcasts: frozenset[int] = frozenset({LIMITED_BROADCAST})
        # Results by (destination, interface): a lookup scans the table and builds a
        # result per packet otherwise. Cleared on every change and when full (bounded,
        # so a scan of many destinations cannot grow it; Linux dropped its unbounded
        # route cache for that reason).
        self._cache: dict[int, RouteResult] = {}
        self._bound_cache: dict[tuple[int, int], RouteResult] = {}  # lookups with an oif

    def _clear_cache(self) -> None:
        self._cache.clear()
        self._bound_cache.clear()

    # --- interfaces and addresses --------------------------------------------------

    def add_link(self, ifindex: int, mtu: int) -> None:
        if ifindex in self._mtus:
            raise ValueError(f"interface {ifindex} already exists")
        self._mtus[ifindex] = mtu
        self._clear_cache()

    def remove_link(self, ifindex: int) -> None:
        self._mtus.pop(ifindex, None)
        self.addresses = [a for a in self.addresses if a.ifindex != ifindex]
        self._routes = [r for r in self._routes if r.ifindex != ifindex]
        self._addresses_changed()

    def link_mtu(self, ifindex: int) -> int:
        return self._mtus[ifindex]

    def set_link_mtu(self, ifindex: int, mtu: int) -> None:
        """A new MTU for an interface (e.g. DHCP option 26) and its routes."""
        self._mtus[ifindex] = mtu
        self._routes = [
            attrs.evolve(r, mtu=mtu) if r.ifindex == ifindex else r for r in self._routes
        ]
        self._clear_cache()

    def _addresses_changed(self) -> None:
        self._clear_cache()
        self._local = frozenset(a.address for a in self.addresses)
        self._broadcasts = frozenset(
            {LIMITED_BROADCAST} | {a.broadcast for a in self.addresses if a.prefix_len < 31}
        )

    def add_address(self, addr: IfAddress) -> None:
        if addr.ifindex not in self._mtus:
            raise ValueError(f"no interface {addr.ifindex}")
        if any(a.address == addr.address for a in self.addresses):
            raise OSError(errno.EEXIST, f"{ip_to_str(addr.address)} is already configured")
        self.addresses.append(addr)
        mtu = self._mtus[addr.ifindex]
        self._routes.append(
            Route(addr.network, addr.prefix_len, None, addr.address, mtu, addr.ifindex)
        )
        # Routes via a gateway on this interface that had no source yet get this one.
        self._routes = [
            attrs.evolve(r, source=addr.address)
            if r.ifindex == addr.ifindex and r.source == 0
            else r
            for r in self._routes
        ]
        self._sort()
        self._addresses_changed()

    def remove_address(self, address: int) -> IfAddress:
        """Remove an address, its connected route and the routes it was the source of."""
        for found in self.addresses:
            if found.address == address:
                break
        else:
            raise OSError(errno.EADDRNOTAVAIL, f"{ip_to_str(address)} is not configured")
        self.addresses.remove(found)
        self._routes = [r for r in self._routes if r.source != address]
        self._addresses_changed()
        return found

    def interface_addresses(self, ifindex: int) -> list[IfAddress]:
        return [a for a in self.addresses if a.ifindex == ifindex]

    # --- routes --------------------------------------------------------------------

    def add_route(
        self, network: int, prefix_len: int, gateway: int | None, ifindex: int | None = None
    ) -> None:
        """Add a route via ``gateway`` (on a connected network) or out of ``ifindex``."""
        mask = prefix_mask(prefix_len)
        if network & mask != network:
            raise ValueError(f"{ip_to_str(network)}/{prefix_len} has host bits set")
        if gateway is not None:
            on = self._connected(gateway)
            if on is None:
                raise ValueError(f"gateway {ip_to_str(gateway)} is not on a connected network")
            if ifindex is not None and on.ifindex != ifindex:
                raise ValueError(f"gateway {ip_to_str(gateway)} is not on interface {ifindex}")
            source, ifindex = on.address, on.ifindex
        else:
            if ifindex is None:
                if not self.addresses:
                    raise ValueError("add an address before adding routes")
                ifindex = self.addresses[0].ifindex
            if ifindex not in self._mtus:
                raise ValueError(f"no interface {ifindex}")
            own = self.interface_addresses(ifindex)
            source = own[0].address if own else 0
        self._routes = [
            r
            for r in self._routes
            if not (r.network == network and r.prefix_len == prefix_len and r.gateway is not None)
        ]
        self._routes.append(
            Route(network, prefix_len, gateway, source, self._mtus[ifindex], ifindex)
        )
        self._sort()

    def remove_route(self, network: int, prefix_len: int) -> None:
        """Remove the non-connected routes to ``network/prefix_len``."""
        self._routes = [
            r
            for r in self._routes
            if not (
                r.network == network
                and r.prefix_len == prefix_len
                and (r.gateway is not None or r.source not in self._local)
            )
        ]
        self._clear_cache()

    def set_default_gateway(self, gateway: int | None) -> None:
        self._routes = [r for r in self._routes if not (r.prefix_len == 0 and r.gateway)]
        self._clear_cache()
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

    def _connected(self, ip: int) -> IfAddress | None:
        for addr in self.addresses:
            if ip & addr.mask == addr.network:
                return addr
        return None

    def _sort(self) -> None:
        self._clear_cache()
        self._routes.sort(key=lambda r: r.prefix_len, reverse=True)

    # --- per-packet queries --------------------------------------------------------

    def is_local(self, dst: int) -> bool:
        return dst in self._local

    def is_broadcast(self, dst: int) -> bool:
        return dst in self._broadcasts

    def lookup(self, dst: int, oif: int | None = None) -> RouteResult:
        """Choose the next hop, source and interface for ``dst``; raises NoRouteError.

        ``oif`` restricts the choice to one interface (Linux's SO_BINDTODEVICE), which
        is how a datagram leaves an interface that has no address yet (a DHCP client:
        from 0.0.0.0 to the limited broadcast, RFC 2131 4.1).
        """
        if oif is None:
            found = self._cache.get(dst)
            if found is None:
                found = self._lookup(dst, None)
                if len(self._cache) >= ROUTE_CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[dst] = found
            return found
        key = (dst, oif)
        bound = self._bound_cache.get(key)
        if bound is None:
            bound = self._lookup(dst, oif)
            if len(self._bound_cache) >= ROUTE_CACHE_ENTRIES:
                self._bound_cache.clear()
            self._bound_cache[key] = bound
        return bound

    def _lookup(self, dst: int, oif: int | None) -> RouteResult:
        if dst == LIMITED_BROADCAST:
            # RFC 1122 3.3.6: limited broadcast goes out on the link as a broadcast.
            if oif is not None:
                if oif not in self._mtus:
                    raise NoRouteError(dst, f"no interface {oif}")
                own = self.interface_addresses(oif)
                return RouteResult(
                    LIMITED_BROADCAST, own[0].address if own else 0, self._mtus[oif], True, oif
                )
            if not self.addresses:
                raise NoRouteError(dst, "no address configured")
            first = self.addresses[0]
            return RouteResult(
                LIMITED_BROADCAST, first.address, self._mtus[first.ifindex], True, first.ifindex
            )
        for route in self._routes:
            if oif is not None and route.ifindex != oif:
                continue
            if route.matches(dst):
                if route.gateway is None:
                    if self.is_broadcast(dst):
                        return RouteResult(
                            LIMITED_BROADCAST, route.source, route.mtu, True, route.ifindex
                        )
                    return RouteResult(dst, route.source, route.mtu, False, route.ifindex)
                return RouteResult(route.gateway, route.source, route.mtu, False, route.ifindex)
        if oif is not None and oif not in self._mtus:
            raise NoRouteError(dst, f"no interface {oif}")
        if not self.addresses:
            raise NoRouteError(dst, "no address configured")
        raise NoRouteError(dst, "no gateway configured")
