"""Initial sequence numbers (RFC 6528), timestamp offsets and the TSval clock (RFC 7323).

ISN = M + F(local address, local port, remote address, remote port, secret),
where M is a 4-microsecond clock and F a keyed hash. The clock makes a new
incarnation of the same 4-tuple start above the old one (so its segments are
never mistaken for the old connection's), the hash makes ISNs unpredictable to
anyone off the path. Zero is never used (seed 000: some peers treat it as a
replay).
"""

from __future__ import annotations

import hashlib

from .seq import Seq, seq

TICKS_PER_SECOND = 250_000  # RFC 6528 3 / RFC 9293 3.4.1: a 4 us clock


def tsval(now: float, offset: int) -> int:
    """Our TSval at ``now`` (RFC 7323 3): a 1 ms clock (5.4 asks for 1 ms to 1 s per tick)
    plus the connection's offset, modulo 2**32. Connections and TIME_WAIT records both
    stamp with it, so a 4-tuple's clock runs on unbroken after the connection ends."""
    return (int(now * 1000) + offset) & 0xFFFFFFFF


class IsnGenerator:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the ISN secret needs at least 16 bytes")
        self._secret = secret

    def _hash(self, label: bytes, lip: int, lport: int, rip: int, rport: int) -> int:
        h = hashlib.blake2b(digest_size=8, key=self._secret[:64], person=label)
        h.update(
            lip.to_bytes(4, "big")
            + lport.to_bytes(2, "big")
            + rip.to_bytes(4, "big")
            + rport.to_bytes(2, "big")
        )
        return int.from_bytes(h.digest()[:4], "big")

    def isn(self, lip: int, lport: int, rip: int, rport: int, now: float) -> Seq:
        value = seq(int(now * TICKS_PER_SECOND) + self._hash(b"isn", lip, lport, rip, rport))
        return value if value else Seq(1)

    def ts_offset(self, lip: int, lport: int, rip: int, rport: int) -> int:
        """A per-connection offset for TSval so timestamps reveal no uptime."""
        return self._hash(b"ts", lip, lport, rip, rport)
