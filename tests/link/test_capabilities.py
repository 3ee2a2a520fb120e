"""Device capabilities: declared by the device, passed through by every wrapper.

The stack reads ``capabilities`` from the outermost link only, so a wrapper that
lost them would quietly turn checksum offload and TSO off.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio

from trio_netstack.link import (
    DeviceCapabilities,
    ImpairedLink,
    Impairment,
    Link,
    PcapLink,
    TapLink,
    memory_link_pair,
    read_pcap,
)
from trio_netstack.link.base import NO_CAPABILITIES
from trio_netstack.link.tap import TSO_MAX_PAYLOAD

OFFLOAD = DeviceCapabilities(
    tx_checksum_partial=True, tso_max_payload=TSO_MAX_PAYLOAD, rx_checksum_trusted=True
)


def tcp_frame(payload: int) -> bytes:
    """An Ethernet/IPv4/TCP frame with ``payload`` bytes of data (no options)."""
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40 + payload, 1, 0, 64, 6, 0, bytes([192, 0, 2, 2]), bytes(4)
    )
    ip = ip[:12] + bytes([192, 0, 2, 1]) + ip[16:]
    tcp = struct.pack("!HHIIBBHHH", 40000, 7000, 1, 1, 0x50, 0x10, 65535, 0, 0)
    data = bytes(i % 251 for i in range(payload))
    return b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02" + b"\x08\x00" + ip + tcp + data


@pytest.fixture
def tap() -> Iterator[tuple[TapLink, socket.socket]]:
    """A TapLink with offload over a datagram socket pair (one read, one frame), no root."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    ours.setblocking(False)
    peer.setblocking(False)
    link = TapLink(socket.dup(ours.fileno()), "fake0", mtu=1500, offload=True)
    ours.close()
    yield link, peer
    peer.close()


def test_devices_declare_what_they_do() -> None:
    a, _ = memory_link_pair()
    assert Link.capabilities == NO_CAPABILITIES == DeviceCapabilities()
    assert not NO_CAPABILITIES.tx_checksum_partial and NO_CAPABILITIES.tso_max_payload == 0
    assert a.capabilities == NO_CAPABILITIES
    plain = TapLink(-1, "fake0", mtu=1500)
    assert plain.capabilities == NO_CAPABILITIES
    assert TSO_MAX_PAYLOAD == 64000
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        OFFLOAD.tso_max_payload = 1  # type: ignore[misc]
    with pytest.raises(ValueError):
        DeviceCapabilities(tso_max_payload=-1)


async def test_wrappers_keep_tso_and_checksum_offload(
    tap: tuple[TapLink, socket.socket], tmp_path: Path
) -> None:
    link, _ = tap
    assert link.capabilities == OFFLOAD
    pcap_over_impair = PcapLink(ImpairedLink(link, Impairment(loss=0.1, seed=1)), tmp_path / "a")
    impair_over_pcap = ImpairedLink(PcapLink(link, tmp_path / "b"), Impairment(corrupt=0.1))
    for wrapped in (pcap_over_impair, impair_over_pcap):
        assert wrapped.capabilities == OFFLOAD
        assert wrapped.capabilities.tso_max_payload == 64000
        assert wrapped.capabilities.tx_checksum_partial
    await pcap_over_impair.aclose()
    await impair_over_pcap.aclose()


async def test_a_super_segment_crosses_pcap_and_impairment_whole(
    tap: tuple[TapLink, socket.socket], tmp_path: Path
) -> None:
    link, peer = tap
    path = tmp_path / "tso.pcap"
    # A no-op impairment still wraps: its send path is the one the stack would use.
    wrapped = PcapLink(ImpairedLink(link, Impairment()), path)
    big = tcp_frame(TSO_MAX_PAYLOAD)
    assert len(big) > 65535 - 1500
    await wrapped.send_batch([big, tcp_frame(100)])
    await wrapped.aclose()
    assert [f for _, f in read_pcap(path)] == [big, tcp_frame(100)]  # recorded uncut
    # The TAP asked the kernel to cut the first at the MTU (GSO TCPv4, MSS 1460).
    first = peer.recv(1 << 17)
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = struct.unpack_from(
        "<BBHHHH", first
    )
    assert (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) == (1, 1, 54, 1460, 34, 16)
    assert len(first) == 10 + len(big) and first[10 + 54 :] == big[54:]
    second = peer.recv(1 << 17)
    assert second[1] == 0 and len(second) == 10 + len(tcp_frame(100))
    assert link.tso_frames == 1
    assert link.stats.tx_frames == 2 and link.stats.tx_bytes == len(big) + len(tcp_frame(100))


async def test_loss_and_corruption_work_on_super_segments() -> None:
    a, b = memory_link_pair(mtu=TSO_MAX_PAYLOAD + 40)  # a wire that takes 64 KiB frames
    big = tcp_frame(TSO_MAX_PAYLOAD)
    lossy = ImpairedLink(a, Impairment(loss=1.0, seed=3, direction="tx"))
    await lossy.send_batch([big] * 3)
    assert lossy.impair_stats["lost"] == 3 and b.receive_ready() == []
    corrupting = ImpairedLink(a, Impairment(corrupt=1.0, seed=3, direction="tx"))
    await corrupting.send_batch([big] * 50)
    with trio.fail_after(5):
        got = await b.receive_batch()
    assert len(got) == 50 and corrupting.impair_stats["corrupted"] == 50
    where = set()
    for data, _ in got:
        diff = [i for i, (x, y) in enumerate(zip(big, data, strict=True)) if x != y]
        assert len(diff) == 1 and diff[0] >= 14
        where.add(diff[0])
    assert max(where) > 1514  # anywhere in the frame, not only its first MTU's worth
