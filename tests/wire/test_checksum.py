from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_netstack.wire.checksum import internet_checksum, ones_sum, pseudo_header_sum


def reference_sum(data: bytes) -> int:
    """RFC 1071 word by word, the slow obvious way."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


@given(st.binary(max_size=3000))
def test_matches_reference(data: bytes) -> None:
    assert ones_sum(data) == reference_sum(data)


@given(st.binary(min_size=2, max_size=200).filter(lambda d: len(d) % 2 == 0))
def test_verifies_to_zero(data: bytes) -> None:
    csum = internet_checksum(b"\0\0" + data[2:])
    assert internet_checksum(csum.to_bytes(2, "big") + data[2:]) == 0


def test_corner_cases() -> None:
    assert ones_sum(b"") == 0
    assert internet_checksum(b"\0\0") == 0xFFFF
    # Non-zero data whose sum is 0xFFFF: the folded sum must be 0xFFFF, not 0.
    assert ones_sum(b"\xff\xff") == 0xFFFF
    assert ones_sum(b"\x80\x00\x7f\xff") == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0
    assert ones_sum(b"\x01") == 0x0100  # odd byte padded with zero


def test_pseudo_header() -> None:
    src, dst = 0xC0000201, 0xC0000202
    expected = reference_sum(
        src.to_bytes(4, "big") + dst.to_bytes(4, "big") + bytes([0, 17]) + (8).to_bytes(2, "big")
    )
    assert ones_sum(b"", pseudo_header_sum(src, dst, 17, 8)) == expected
