from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_netstack.wire import ParseError, udp
from trio_netstack.wire.checksum import internet_checksum, pseudo_header_sum

SRC, DST = 0xC0000201, 0xC0000202

# `echo hello! | nc -u 192.0.2.2 8888` from Linux 192.0.2.1 port 60756 (seed 000's scenario).
LINUX_HELLO = bytes.fromhex("ed5422b8000e") + b"\x00\x00" + b"hello!"


def with_checksum(segment: bytes) -> bytes:
    csum = internet_checksum(segment, pseudo_header_sum(SRC, DST, 17, len(segment)))
    return segment[:6] + csum.to_bytes(2, "big") + segment[8:]


def test_build_matches_independent_checksum() -> None:
    built = udp.build(SRC, DST, 60756, 8888, b"hello!")
    assert built == with_checksum(LINUX_HELLO)
    sport, dport, payload = udp.parse_untrusted(built, SRC, DST)
    assert (sport, dport, bytes(payload)) == (60756, 8888, b"hello!")


def test_zero_checksum_accepted_and_bad_rejected() -> None:
    assert bytes(udp.parse_untrusted(LINUX_HELLO, SRC, DST)[2]) == b"hello!"
    bad = bytearray(udp.build(SRC, DST, 1, 2, b"x"))
    bad[8] ^= 1
    with pytest.raises(ParseError, match="udp_bad_checksum"):
        udp.parse_untrusted(bytes(bad), SRC, DST)
    # The same datagram with a different pseudo-header (spoofed address) fails too.
    with pytest.raises(ParseError):
        udp.parse_untrusted(udp.build(SRC, DST, 1, 2, b"x"), SRC, DST + 1)


def test_length_field_bounds_payload() -> None:
    padded = LINUX_HELLO + b"\0\0\0"
    assert bytes(udp.parse_untrusted(padded, SRC, DST)[2]) == b"hello!"
    for length in (7, 15):
        bad = LINUX_HELLO[:4] + length.to_bytes(2, "big") + LINUX_HELLO[6:]
        with pytest.raises(ParseError, match="udp_bad_length"):
            udp.parse_untrusted(bad, SRC, DST)


def test_checksum_zero_result_sent_as_ones() -> None:
    # Find a payload whose checksum computes to 0; it must be sent as 0xFFFF.
    for n in range(70000):
        payload = n.to_bytes(4, "big")
        built = udp.build(SRC, DST, 1000, 2000, payload)
        if built[6:8] == b"\xff\xff":
            assert udp.parse_untrusted(built, SRC, DST)[2] == payload
            return
    pytest.fail("no zero-checksum payload found")


@given(st.binary(max_size=64))
def test_random_bytes_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        udp.parse_untrusted(data, SRC, DST)


@given(st.integers(1, 65535), st.integers(1, 65535), st.binary(max_size=200))
def test_roundtrip(sport: int, dport: int, payload: bytes) -> None:
    got = udp.parse_untrusted(udp.build(SRC, DST, sport, dport, payload), SRC, DST)
    assert (got[0], got[1], bytes(got[2])) == (sport, dport, payload)
