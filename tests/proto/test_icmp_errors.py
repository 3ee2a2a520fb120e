"""ICMP error generation rules (RFC 1122 3.2.2) and rate limiting, with explicit time."""

from __future__ import annotations

import errno
import os

from trio_netstack.proto.icmp import IcmpMachine, error_to_errno, error_to_exception
from trio_netstack.proto.ratelimit import RateLimitConfig, TokenBucket
from trio_netstack.wire import icmp as wicmp
from trio_netstack.wire import ipv4 as wip
from trio_netstack.wire import udp as wudp
from trio_netstack.wire.addr import ip_from_str

ME = ip_from_str("192.0.2.2")
PEER = ip_from_str("192.0.2.1")


def received(
    payload: bytes, *, src: int = PEER, proto: int = 17, ff: int = 0
) -> tuple[wip.Ipv4Header, memoryview]:
    packet = (
        wip.build_header(
            src=src, dst=ME, protocol=proto, payload_length=len(payload), ident=5, flags_fragment=ff
        )
        + payload
    )
    return wip.parse_untrusted(packet)


def udp_to_closed_port(size: int = 10) -> tuple[wip.Ipv4Header, memoryview]:
    return received(wudp.build(PEER, ME, 40000, 9999, bytes(size)))


def test_port_unreachable_quotes_the_datagram() -> None:
    m = IcmpMachine()
    header, data = udp_to_closed_port()
    assert m.send_error(wicmp.DEST_UNREACHABLE, wicmp.UNREACH_PORT, header, data, 0.0)
    [out] = m.out
    assert (out.dst, out.src, out.protocol) == (PEER, ME, wip.PROTO_ICMP)
    msg = wicmp.parse_untrusted(out.payload)
    assert (msg.type, msg.code) == (3, 3)
    quoted_header, quoted = wip.parse_untrusted(bytes(msg.payload), verify_checksum=True)
    assert quoted_header.src == PEER and bytes(quoted) == bytes(data)


def test_quote_limited_to_576_bytes() -> None:
    m = IcmpMachine()
    header, data = udp_to_closed_port(2000)
    m.send_error(3, 3, header, data, 0.0)
    assert 20 + len(m.out[0].payload) == 576


def test_never_about_errors_broadcasts_fragments_or_bad_sources() -> None:
    m = IcmpMachine()
    err = wicmp.build(wicmp.DEST_UNREACHABLE, 1, 0, bytes(28))
    cases = [
        (received(err, proto=1), {}),
        (received(bytes([200, 0, 0, 0]), proto=1), {}),  # unknown ICMP type
        (udp_to_closed_port(), {"to_broadcast": True}),
        (received(bytes(16), ff=3), {}),  # non-first fragment
        (received(bytes(16), src=ip_from_str("224.0.0.5")), {}),
        (received(bytes(16), src=0), {}),
    ]
    for (header, data), kw in cases:
        assert not m.send_error(3, 3, header, data, 0.0, **kw)  # type: ignore[arg-type]
    assert m.out == []
    assert m.counters["error_suppressed_icmp_error"] == 2
    assert m.counters["error_suppressed_broadcast"] == 1
    assert m.counters["error_suppressed_fragment"] == 1
    assert m.counters["error_suppressed_source"] == 2
    # An error about an echo request is fine.
    header, data = received(wicmp.build_echo(True, 1, 1, b""), proto=1)
    assert m.send_error(3, 2, header, data, 0.0)


def test_rate_limit_per_destination_and_global() -> None:
    m = IcmpMachine(
        RateLimitConfig(
            global_rate=1000, global_burst=50, per_destination_rate=1.0, per_destination_burst=6
        )
    )
    header, data = udp_to_closed_port()
    sent = [m.send_error(3, 3, header, data, 0.0) for _ in range(10)]
    assert sent == [True] * 6 + [False] * 4
    assert m.send_error(3, 3, header, data, 0.5) is False
    assert m.send_error(3, 3, header, data, 1.0) is True  # one token per second
    assert m.counters["error_rate_limited"] == 5
    # Many destinations: the global bucket (burst 50) stops the flood.
    g = IcmpMachine()
    ok = 0
    for i in range(200):
        h, d = received(wudp.build(PEER + i, ME, 1, 2, b""), src=PEER + i)
        ok += g.send_error(3, 3, h, d, 0.0)
    assert ok == 50


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10.0, burst=2.0, now=0.0)
    assert [bucket.allow(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.allow(0.05) is False
    assert bucket.allow(0.1) is True


def test_error_mapping() -> None:
    assert error_to_errno(3, 3) == errno.ECONNREFUSED
    assert error_to_errno(3, 1) == errno.EHOSTUNREACH
    assert error_to_errno(3, 0) == errno.ENETUNREACH
    assert error_to_errno(11, 0) == errno.EHOSTUNREACH


def test_error_to_exception() -> None:
    refused = error_to_exception(wicmp.DEST_UNREACHABLE, wicmp.UNREACH_PORT)
    assert type(refused) is ConnectionRefusedError
    assert (refused.errno, refused.strerror) == (errno.ECONNREFUSED, "Connection refused")
    host = error_to_exception(wicmp.DEST_UNREACHABLE, wicmp.UNREACH_HOST, PEER)
    assert type(host) is OSError and host.errno == errno.EHOSTUNREACH
    assert host.strerror == "No route to host (ICMP from 192.0.2.1)"
    # The texts are the C library's (what os.strerror said when the shell built them).
    for mtype, code in ((3, 0), (3, 1), (3, 2), (3, 3), (3, 4), (11, 0), (12, 0)):
        exc = error_to_exception(mtype, code)
        assert exc.errno == error_to_errno(mtype, code)
        assert exc.strerror == os.strerror(exc.errno)
