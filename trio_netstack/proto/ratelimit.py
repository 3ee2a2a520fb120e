"""Token buckets for ICMP error rate limiting (RFC 1812 4.3.2.8, RFC 4443 2.4(f) style).

Like Linux: one global bucket (icmp_msgs_per_sec / icmp_msgs_burst) and one
bucket per destination (icmp_ratelimit, with a burst of six), the per-destination
table bounded with least-recently-used eviction.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs


@attrs.frozen
class RateLimitConfig:
    global_rate: float = 1000.0  # messages per second, all destinations
    global_burst: float = 50.0
    per_destination_rate: float = 1.0  # Linux's icmp_ratelimit of 1000 ms
    per_destination_burst: float = 6.0
    max_destinations: int = 4096


class TokenBucket:
    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def allow(self, now: float) -> bool:
        elapsed = max(0.0, now - self.last)
        self.last = now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class IcmpRateLimiter:
    def __init__(self, config: RateLimitConfig | None = None) -> None:
        self.config = config or RateLimitConfig()
        self._global: TokenBucket | None = None
        self._peers: OrderedDict[int, TokenBucket] = OrderedDict()

    def allow(self, dst: int, now: float) -> bool:
        cfg = self.config
        if self._global is None:
            self._global = TokenBucket(cfg.global_rate, cfg.global_burst, now)
        peer = self._peers.get(dst)
        if peer is None:
            peer = TokenBucket(cfg.per_destination_rate, cfg.per_destination_burst, now)
            self._peers[dst] = peer
            if len(self._peers) > cfg.max_destinations:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(dst)
        # Check the peer first so a peer over its limit does not drain the global bucket.
        return peer.allow(now) and self._global.allow(now)
