"""Ephemeral port selection, shared by UDP and TCP.

RFC 6056 3.3.1 (Algorithm 1, simple port randomization): start at a random port of the
ephemeral range and take the first free one from there, wrapping around. The range is
Linux's ip_local_port_range, 32768-60999. The random source is injected (the pure core
draws no randomness of its own); one draw per pick.
"""

from __future__ import annotations

from collections.abc import Callable

EPHEMERAL_LOW = 32768
EPHEMERAL_HIGH = 60999


def pick_ephemeral(
    randrange: Callable[[int, int], int], is_free: Callable[[int], bool]
) -> int | None:
    """The first port ``is_free`` accepts, from a random start; None when every one is taken."""
    span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
    start = randrange(0, span)
    for i in range(span):
        port = EPHEMERAL_LOW + (start + i) % span
        if is_free(port):
            return port
    return None
