"""Random and mutated bytes may only ever raise ParseError from a parser."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_netstack.testing.golden import LINUX_ARP_REQUEST, LINUX_ECHO_REQUEST
from trio_netstack.wire import ParseError, arp, ethernet, icmp, ipv4

PARSERS: list[tuple[str, Callable[[bytes], Any]]] = [
    ("ethernet", ethernet.parse_untrusted),
    ("arp", arp.parse_untrusted),
    ("ipv4", ipv4.parse_untrusted),
    ("ipv4-nocsum", lambda b: ipv4.parse_untrusted(b, verify_checksum=False)),
    ("icmp", icmp.parse_untrusted),
    ("icmp-nocsum", lambda b: icmp.parse_untrusted(b, verify_checksum=False)),
]

SEEDS = [
    LINUX_ARP_REQUEST,
    LINUX_ECHO_REQUEST,
    LINUX_ARP_REQUEST[14:],
    LINUX_ECHO_REQUEST[14:],
    LINUX_ECHO_REQUEST[34:],
]


def only_parse_error(parser: Callable[[bytes], Any], data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parser(data)


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=[p[0] for p in PARSERS])
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120))
def test_random_bytes(name: str, parser: Callable[[bytes], Any], data: bytes) -> None:
    only_parse_error(parser, data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 2))
        if op == 0 and base:
            i = draw(st.integers(0, len(base) - 1))
            base[i] = draw(st.integers(0, 255))
        elif op == 1 and base:
            del base[draw(st.integers(0, len(base) - 1)) :]
        else:
            base += draw(st.binary(max_size=8))
    return bytes(base)


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=[p[0] for p in PARSERS])
@settings(max_examples=300, deadline=None)
@given(data=mutated())
def test_mutated_bytes(name: str, parser: Callable[[bytes], Any], data: bytes) -> None:
    only_parse_error(parser, data)


def test_ipv4_option_overrun_rejected() -> None:
    hdr = bytearray(
        ipv4.build_header(
            src=1, dst=2, protocol=1, payload_length=0, ident=1, options=b"\x07\x08\x04\x00"
        )
    )
    hdr[21] = 40  # record-route length beyond the header
    with pytest.raises(ParseError) as info:
        ipv4.parse_untrusted(bytes(hdr), verify_checksum=False)
    assert info.value.reason == "ip_bad_option"


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFFFFFF), st.binary(max_size=64))
def test_icmp_roundtrip(mtype: int, code: int, rest: int, payload: bytes) -> None:
    msg = icmp.parse_untrusted(icmp.build(mtype, code, rest, payload))
    assert (msg.type, msg.code, msg.rest, bytes(msg.payload)) == (mtype, code, rest, payload)


@given(
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 255),
    st.binary(max_size=100),
    st.integers(0, 0xFFFF),
    st.integers(1, 255),
)
def test_ipv4_roundtrip(
    src: int, dst: int, proto: int, payload: bytes, ident: int, ttl: int
) -> None:
    packet = (
        ipv4.build_header(
            src=src, dst=dst, protocol=proto, payload_length=len(payload), ident=ident, ttl=ttl
        )
        + payload
    )
    header, data = ipv4.parse_untrusted(packet + b"\0" * 5)  # trailing padding ignored
    assert (header.src, header.dst, header.protocol, header.ident, header.ttl) == (
        src,
        dst,
        proto,
        ident,
        ttl,
    )
    assert bytes(data) == payload
