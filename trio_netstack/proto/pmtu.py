"""Path MTU discovery state (RFC 1191).

"Fragmentation needed" errors (ICMP type 3 code 4) lower the MTU we use
towards a destination; entries expire after ``expires`` seconds so that a path
that grew is found again (RFC 1191 6.3; Linux's mtu_expires of 10 minutes).
A report is never believed below ``min_pmtu`` (Linux's min_pmtu of 552 guards
against forged errors that would shrink segments to nothing), nor at or above
the current value. Old routers send a zero next-hop MTU: we then step down the
plateau table of RFC 1191 7.1 below the length of the datagram they quoted.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs

from .counters import Counters

# RFC 1191 7.1, table 7-1
PLATEAUS = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)


@attrs.frozen
class PmtuConfig:
    expires: float = 600.0
    min_pmtu: int = 552
    max_entries: int = 1024


class PathMtuCache:
    def __init__(self, config: PmtuConfig | None = None) -> None:
        self.config = config or PmtuConfig()
        self.counters = Counters()
        self._entries: OrderedDict[int, tuple[int, float]] = OrderedDict()  # dst -> (mtu, expiry)

    def get(self, dst: int, now: float) -> int | None:
        entry = self._entries.get(dst)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[dst]
            self.counters.incr("expired")
            return None
        return entry[0]

    def learn(self, dst: int, reported: int, quoted_length: int, current: int, now: float) -> int:
        """Apply a "fragmentation needed" report; return the path MTU now in force.

        ``reported`` is the next-hop MTU field (0 from an RFC 792 router),
        ``quoted_length`` the total length of our datagram it quotes, ``current``
        the MTU we were using.
        """
        if reported == 0:
            reported = next((p for p in PLATEAUS if p < quoted_length), 68)
            self.counters.incr("plateau_estimates")
        mtu = max(reported, self.config.min_pmtu)
        if mtu >= current:
            self.counters.incr("ignored_not_lower")
            return current
        self._entries[dst] = (mtu, now + self.config.expires)
        self._entries.move_to_end(dst)
        if len(self._entries) > self.config.max_entries:
            self._entries.popitem(last=False)
        self.counters.incr("lowered")
        return mtu

    def __len__(self) -> int:
        return len(self._entries)
