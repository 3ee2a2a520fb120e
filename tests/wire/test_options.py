"""The option walk shared by IPv4 and TCP: bounded, and the TCP parse it feeds unchanged."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trio_netstack.wire import ParseError, ipv4, tcp
from trio_netstack.wire.options import OPT_END, OPT_NOP, walk_untrusted

_U32 = struct.Struct("!I")


@given(st.binary(max_size=60))
@example(b"\x01" * 40)
@example(bytes([7, 2] * 20))
@example(bytes([7, 255]))
def test_the_walk_ends_and_stays_inside_the_list(raw: bytes) -> None:
    try:
        found = walk_untrusted(raw, "x_bad_option")
    except ParseError as exc:
        assert exc.reason == "x_bad_option"
        return
    end = 0
    for kind, at, length in found:
        assert kind not in (OPT_END, OPT_NOP)
        assert at >= end and length >= 2 and at + length <= len(raw)
        assert all(b == OPT_NOP for b in raw[end:at])  # only padding was skipped
        end = at + length
    assert len(found) <= len(raw) // 2


def test_the_walk_stops_at_end_and_reports_where_options_are() -> None:
    raw = bytes([OPT_NOP, 2, 4, 5, 180, OPT_NOP, 30, 3, 9, OPT_END, 99, 99])
    assert walk_untrusted(raw, "r") == [(2, 1, 4), (30, 6, 3)]
    assert walk_untrusted(b"", "r") == []


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (bytes([OPT_NOP, OPT_NOP, OPT_NOP, 7]), "option 7 has no length"),
        (bytes([7, 1, 0, 0]), "option 7 length 1"),
        (bytes([7, 0, 0, 0]), "option 7 length 0"),
        (bytes([7, 5, 0, 0]), "option 7 length 5"),
    ],
)
def test_ipv4_and_tcp_keep_their_reasons(raw: bytes, detail: str) -> None:
    with pytest.raises(ParseError) as info:
        walk_untrusted(raw, "ip_bad_option")
    assert str(info.value) == f"ip_bad_option: {detail}"
    ip_header = ipv4.build_header(src=1, dst=2, protocol=17, payload_length=0, ident=1, options=raw)
    with pytest.raises(ParseError) as info:
        ipv4.parse_untrusted(ip_header)
    assert info.value.reason == "ip_bad_option"
    tcp_header = tcp.HEADER.pack(1, 2, 3, 4, ((20 + len(raw)) >> 2) << 4, tcp.ACK, 9, 0, 0)
    with pytest.raises(ParseError) as info:
        tcp.parse_untrusted(tcp_header + raw, 1, 2, verify_checksum=False)
    assert str(info.value) == f"tcp_bad_option: {detail}"


def reference_tcp_options(raw: bytes) -> tcp.TcpOptions:
    """The TCP option parse as it was before the shared walk: the specification."""
    opts = tcp.TcpOptions()
    i = 0
    n = len(raw)
    while i < n:
        kind = raw[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n:
            raise ParseError("tcp_bad_option")
        length = raw[i + 1]
        if length < 2 or i + length > n:
            raise ParseError("tcp_bad_option")
        body = raw[i + 2 : i + length]
        if kind == 2:
            if length != 4:
                raise ParseError("tcp_bad_option")
            opts.mss = (body[0] << 8) | body[1]
        elif kind == 3:
            if length != 3:
                raise ParseError("tcp_bad_option")
            opts.wscale = min(body[0], 14)
        elif kind == 4:
            if length != 2:
                raise ParseError("tcp_bad_option")
            opts.sack_permitted = True
        elif kind == 5:
            if (length - 2) % 8 or length == 2:
                raise ParseError("tcp_bad_option")
            opts.sack_blocks = tuple(
                (_U32.unpack_from(body, j)[0], _U32.unpack_from(body, j + 4)[0])
                for j in range(0, length - 2, 8)
            )
        elif kind == 8:
            if length != 10:
                raise ParseError("tcp_bad_option")
            opts.timestamp = (_U32.unpack_from(body, 0)[0], _U32.unpack_from(body, 4)[0])
        i += length
    return opts


def _option() -> st.SearchStrategy[bytes]:
    """Well-formed options of every kind TCP knows, malformed ones, padding and END."""
    u32 = st.integers(0, 0xFFFFFFFF)
    return st.one_of(
        st.just(bytes([OPT_NOP])),
        st.just(bytes([OPT_END])),
        st.builds(lambda v: bytes([2, 4]) + v.to_bytes(2, "big"), st.integers(0, 0xFFFF)),
        st.builds(lambda v: bytes([3, 3, v]), st.integers(0, 255)),
        st.just(bytes([4, 2])),
        st.builds(lambda a, b: bytes([8, 10]) + _U32.pack(a) + _U32.pack(b), u32, u32),
        st.builds(
            lambda edges: bytes([5, 2 + 4 * len(edges)]) + b"".join(_U32.pack(e) for e in edges),
            st.lists(u32, min_size=0, max_size=9),
        ),
        st.builds(
            lambda k, n, b: bytes([k, n]) + b,
            st.integers(0, 255),
            st.integers(0, 12),
            st.binary(max_size=10),
        ),
        st.binary(min_size=1, max_size=3),
    )


@given(st.lists(_option(), max_size=12).map(lambda parts: b"".join(parts)[:40]))
@example(bytes([1, 1, 8, 10]) + bytes(range(8)))
@example(bytes([1, 1, 5, 34]) + bytes(range(32)))
def test_tcp_options_parse_as_before(raw: bytes) -> None:
    try:
        want: tcp.TcpOptions | str = reference_tcp_options(raw)
    except ParseError as exc:
        want = exc.reason
    try:
        got: tcp.TcpOptions | str = tcp._parse_options_untrusted(memoryview(raw))
    except ParseError as exc:
        got = exc.reason
    assert got == want
