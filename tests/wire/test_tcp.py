from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_netstack.wire import ParseError, tcp
from trio_netstack.wire.checksum import finish, internet_checksum, ones_sum, pseudo_header_sum

SRC, DST = 0xC0000201, 0xC0000202

# The SYN Linux sent in seed 000 (mss 1460, sackOK, TS val 750056803 ecr 0, nop, wscale 7).
LINUX_SYN_OPTIONS = bytes.fromhex("020405b40402080a2cb4f5630000000001030307")


def linux_syn() -> bytes:
    header = tcp.HEADER.pack(36644, 8888, 794448035, 0, (40 >> 2) << 4, tcp.SYN, 64240, 0, 0)
    raw = header + LINUX_SYN_OPTIONS
    csum = internet_checksum(raw, pseudo_header_sum(SRC, DST, 6, len(raw)))
    return raw[:16] + csum.to_bytes(2, "big") + raw[18:]


def test_linux_syn_options() -> None:
    seg = tcp.parse_untrusted(linux_syn(), SRC, DST)
    assert (seg.sport, seg.dport, seg.seq, seg.flags, seg.window) == (
        36644,
        8888,
        794448035,
        tcp.SYN,
        64240,
    )
    o = seg.options
    assert (o.mss, o.sack_permitted, o.timestamp, o.wscale) == (1460, True, (750056803, 0), 7)
    assert seg.seg_len == 1


def test_build_uses_linux_layout() -> None:
    built = tcp.build(
        SRC,
        DST,
        36644,
        8888,
        794448035,
        0,
        tcp.SYN,
        64240,
        mss=1460,
        sack_permitted=True,
        timestamp=(750056803, 0),
        wscale=7,
    )
    assert built == linux_syn()


@pytest.mark.parametrize(
    "options",
    [
        bytes([1, 1, 1, 1, 1, 1, 2, 4]),  # MSS cut short by the header end
        bytes([2, 0, 0, 0]),  # length 0
        bytes([8, 1, 0, 0]),  # length 1
        bytes([3, 4, 7, 0]),  # wscale of length 4
        bytes([5, 6, 0, 0, 0, 0, 0, 0]),  # SACK block of 4 bytes
        bytes([30, 9, 0, 0]),  # unknown option running past the header
    ],
)
def test_malformed_options_rejected(options: bytes) -> None:
    header = tcp.HEADER.pack(1, 2, 3, 4, ((20 + len(options)) >> 2) << 4, tcp.ACK, 100, 0, 0)
    with pytest.raises(ParseError, match="tcp_bad_option"):
        tcp.parse_untrusted(header + options, SRC, DST, verify_checksum=False)


def test_unknown_option_skipped_and_wscale_capped() -> None:
    options = bytes([30, 4, 0xAA, 0xBB, 3, 3, 20, 1])
    header = tcp.HEADER.pack(1, 2, 3, 4, ((20 + len(options)) >> 2) << 4, tcp.SYN, 100, 0, 0)
    seg = tcp.parse_untrusted(header + options, SRC, DST, verify_checksum=False)
    assert seg.options.wscale == 14  # RFC 7323 2.3


def test_sack_blocks_roundtrip() -> None:
    blocks = ((1, 100), (0xFFFFFF00, 5))
    built = tcp.build(
        SRC, DST, 1, 2, 3, 4, tcp.ACK, 100, b"x", sack_blocks=blocks, timestamp=(9, 8)
    )
    seg = tcp.parse_untrusted(built, SRC, DST)
    assert seg.options.sack_blocks == blocks and seg.options.timestamp == (9, 8)
    assert bytes(seg.payload) == b"x"


@given(st.binary(max_size=80))
def test_random_bytes_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        tcp.parse_untrusted(data, SRC, DST, verify_checksum=False)


@given(st.binary(min_size=20, max_size=80), st.integers(0, 79), st.integers(0, 255))
def test_mutated_syn_only_parse_error(tail: bytes, index: int, value: int) -> None:
    raw = bytearray(linux_syn() + tail)
    raw[index % len(raw)] = value
    with contextlib.suppress(ParseError):
        tcp.parse_untrusted(bytes(raw), SRC, DST, verify_checksum=False)


def test_partial_checksum_is_the_pseudo_header_sum_a_device_completes() -> None:
    # Checksum offload (Linux's CHECKSUM_PARTIAL): the field holds the folded
    # pseudo-header sum; the device adds the segment's own sum and complements it.
    src, dst = 0xC0000202, 0xC0000201
    args = (src, dst, 40000, 80, 7, 9, tcp.ACK | tcp.PSH, 1000, b"partial payload")
    full = tcp.build(*args, timestamp=(1, 2))
    partial = tcp.build(*args, timestamp=(1, 2), partial_checksum=True)
    assert partial[:16] == full[:16] and partial[18:] == full[18:]
    seeded = int.from_bytes(partial[16:18], "big")
    assert seeded == ones_sum(b"", pseudo_header_sum(src, dst, 6, len(full)))
    # What the device does: sum the segment from the TCP header on, seed included.
    completed = finish(ones_sum(partial[:16] + b"\0\0" + partial[18:], seeded))
    assert completed == int.from_bytes(full[16:18], "big")
    assert tcp.parse_untrusted(partial[:16] + completed.to_bytes(2, "big") + partial[18:], src, dst)
