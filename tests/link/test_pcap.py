"""Classic pcap files: exact header, round trip, and the PcapLink wrapper."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import trio

from trio_netstack.link import PcapLink, PcapWriter, memory_link_pair, read_pcap
from trio_netstack.link.pcap import SNAPLEN

# Who-has 192.0.2.2 tell 192.0.2.1, as the kernel sends it (42 bytes, unpadded).
ARP_REQUEST = bytes.fromhex(
    "ffffffffffff02000000000108060001080006040001020000000001c0000201000000000000c0000202"
)


def udp_frame(n: int) -> bytes:
    payload = n.to_bytes(4, "big")
    ip_header = (
        bytes.fromhex("45000020000100004011") + b"\0\0" + bytes([192, 0, 2, 1, 192, 0, 2, 2])
    )
    udp = struct.pack("!HHHH", 1000, 2000, 12, 0) + payload
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip_header + udp


def test_header_is_classic_pcap(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    with PcapWriter(path) as w:
        w.write(ARP_REQUEST, timestamp=1_700_000_000.25)
    raw = path.read_bytes()
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack_from("=IHHiIII", raw)
    assert (magic, major, minor, zone, sigfigs) == (0xA1B2C3D4, 2, 4, 0, 0)
    assert (snaplen, linktype) == (262144, 1)
    sec, usec, caplen, origlen = struct.unpack_from("=IIII", raw, 24)
    assert (sec, usec, caplen, origlen) == (1_700_000_000, 250_000, 42, 42)
    assert raw[40:] == ARP_REQUEST


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rt.pcap"
    frames = [udp_frame(i) for i in range(50)] + [ARP_REQUEST, bytes(1514)]
    stamps = [1_600_000_000 + i * 0.001001 for i in range(len(frames))]
    w = PcapWriter(path)
    for f, t in zip(frames, stamps, strict=True):
        w.write(bytearray(f), timestamp=t)
    w.flush()
    assert w.frames_written == len(frames)
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError):
        w.write(ARP_REQUEST)
    got = read_pcap(path)
    assert [f for _, f in got] == frames
    assert [t for t, _ in got] == pytest.approx(stamps, abs=1e-6)


def test_long_frames_are_cut_to_snaplen(tmp_path: Path) -> None:
    path = tmp_path / "big.pcap"
    with PcapWriter(path) as w:
        w.write(bytes(SNAPLEN + 10), timestamp=1.0)
    raw = path.read_bytes()
    assert struct.unpack_from("=II", raw, 32) == (SNAPLEN, SNAPLEN + 10)
    assert read_pcap(path) == [(1.0, bytes(SNAPLEN))]


def test_read_pcap_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))  # pcapng starts like this
    with pytest.raises(ValueError, match="not a classic pcap"):
        read_pcap(bad)
    good = tmp_path / "cut.pcap"
    with PcapWriter(good) as w:
        w.write(ARP_REQUEST, timestamp=1.0)
    good.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_pcap(good)


async def test_pcap_link_records_both_directions_in_order(tmp_path: Path) -> None:
    path = tmp_path / "link.pcap"
    a, b = memory_link_pair()
    link = PcapLink(a, path)
    assert (link.name, link.mtu, link.hw_address) == ("mem0", 1500, None)
    assert link.stats is a.stats
    await link.send_batch([udp_frame(1), udp_frame(2)])
    await b.send_batch([udp_frame(3)])
    assert await link.receive_batch() == [(udp_frame(3), 0)]
    await link.send_batch([udp_frame(4)])
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)  # forwards to the inner link's run()
    await link.aclose()
    assert [f for _, f in read_pcap(path)] == [udp_frame(n) for n in (1, 2, 3, 4)]
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_batch()


@pytest.mark.parametrize("tool", ["tcpdump", "tshark"])
def test_real_tools_read_our_files(tmp_path: Path, tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"needs {tool}")
    path = tmp_path / "tools.pcap"
    with PcapWriter(path) as w:
        w.write(ARP_REQUEST)
        for i in range(3):
            w.write(udp_frame(i))
    argv = [tool, "-n", "-r", str(path)]
    done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "192.0.2.2" in out and "ARP" in out
    assert out.count("UDP") >= 3 or out.count("1000 > 2000") + out.count("1000 → 2000") >= 3
