"""The MSS a connection announces (RFC 9293 3.7.1, RFC 879): the MTU less the headers."""

from __future__ import annotations

IPV4_HEADER = 20
TCP_HEADER = 20


def mss_for_mtu(mtu: int) -> int:
    """The largest segment payload that fits ``mtu`` with option-less IPv4 and TCP headers.

    Options are not counted here (RFC 9293 3.7.1: the MSS excludes them; the sender
    subtracts what its options take from each segment).
    """
    return mtu - IPV4_HEADER - TCP_HEADER
