"""Packet capture in the classic libpcap format, and a link wrapper that records.

The classic format (not pcapng) because every tool reads it: tcpdump, tshark,
Wireshark, scapy. A file is a 24-byte global header followed by one 16-byte
record header plus the frame bytes per packet. We write native byte order with
the standard magic 0xa1b2c3d4 (readers detect the order from the magic),
microsecond timestamps and link type Ethernet.

Timestamps come from the wall clock (``time.time()``), not Trio's clock: captures
are meant to be compared with tcpdump running beside us, and under a test clock
Trio's time is not a date.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Sequence
from typing import BinaryIO

import trio

from .base import Link, RxFrame

__all__ = ["LINKTYPE_ETHERNET", "SNAPLEN", "PcapLink", "PcapWriter", "read_pcap"]

_MAGIC_USEC = 0xA1B2C3D4
_MAGIC_NSEC = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
#: The snapshot length tcpdump uses by default; longer frames are cut to it.
SNAPLEN = 262144

_GLOBAL = struct.Struct("=IHHiIII")
_RECORD = struct.Struct("=IIII")


class PcapWriter:
    """Write frames to a new libpcap file at ``path`` (truncating it)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # Not a with-block: the file lives as long as the writer; close() ends it.
        self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115
        self._file.write(_GLOBAL.pack(_MAGIC_USEC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        self.frames_written = 0

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, frame: bytes | bytearray | memoryview, timestamp: float | None = None) -> None:
        """Append one frame, stamped ``timestamp`` (seconds since the epoch; default now)."""
        f = self._file
        if f is None:
            raise ValueError("write to a closed PcapWriter")
        ts = time.time() if timestamp is None else timestamp
        sec = int(ts)
        usec = round((ts - sec) * 1_000_000)
        if usec >= 1_000_000:  # rounding up a .9999996 fraction
            sec, usec = sec + 1, usec - 1_000_000
        length = len(frame)
        caplen = min(length, SNAPLEN)
        f.write(_RECORD.pack(sec, usec, caplen, length))
        f.write(frame if caplen == length else memoryview(frame)[:caplen])
        self.frames_written += 1

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Flush and close. Idempotent."""
        f, self._file = self._file, None
        if f is not None:
            f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(path: str | os.PathLike[str]) -> list[tuple[float, bytes]]:
    """(timestamp, frame) of every record of a classic pcap file, for tests.

    Accepts either byte order and micro- or nanosecond timestamps; raises
    ValueError on anything else or on a truncated file.
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _GLOBAL.size:
        raise ValueError(f"{os.fspath(path)}: too short for a pcap header")
    for order in ("<", ">"):
        (magic,) = struct.unpack_from(order + "I", data)
        if magic in (_MAGIC_USEC, _MAGIC_NSEC):
            break
    else:
        raise ValueError(f"{os.fspath(path)}: not a classic pcap file (magic {data[:4].hex()})")
    scale = 1e-6 if magic == _MAGIC_USEC else 1e-9
    record = struct.Struct(order + "IIII")
    out: list[tuple[float, bytes]] = []
    pos = _GLOBAL.size
    while pos < len(data):
        if pos + record.size > len(data):
            raise ValueError(f"{os.fspath(path)}: truncated record header at byte {pos}")
        sec, frac, caplen, _ = record.unpack_from(data, pos)
        pos += record.size
        if pos + caplen > len(data):
            raise ValueError(f"{os.fspath(path)}: truncated record at byte {pos}")
        out.append((sec + frac * scale, data[pos : pos + caplen]))
        pos += caplen
    return out


class PcapLink(Link):
    """Wrap ``inner`` and record every frame that crosses it, in crossing order.

    Received frames are written as they are handed to the stack, sent frames as
    the stack hands them to the device (before the device may refuse one). The
    file is flushed and closed by ``aclose()``. Name, MTU, MAC, stats and
    capabilities are the inner link's.
    """

    def __init__(self, inner: Link, path: str | os.PathLike[str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.mtu = inner.mtu
        self.hw_address = inner.hw_address
        self.stats = inner.stats
        # Recording changes nothing the device does: its offloads stay on (SNAPLEN keeps
        # a 64 KiB super-segment whole).
        self.capabilities = inner.capabilities
        self.writer = PcapWriter(path)

    def __repr__(self) -> str:
        return f"<PcapLink {self.writer.path!r} over {self.inner!r}>"

    async def receive_batch(self) -> list[RxFrame]:
        return self._record(await self.inner.receive_batch())

    def receive_ready(self) -> list[RxFrame]:
        return self._record(self.inner.receive_ready())

    def _record(self, batch: list[RxFrame]) -> list[RxFrame]:
        if batch and not self.writer.closed:
            now = time.time()
            write = self.writer.write
            for frame, _ in batch:
                write(frame, now)
        return batch

    async def send_batch(self, frames: Sequence[bytes | bytearray | memoryview]) -> None:
        if not self.writer.closed:
            now = time.time()
            write = self.writer.write
            for frame in frames:
                write(frame, now)
        await self.inner.send_batch(frames)

    def try_send(self, frames: Sequence[bytes | bytearray | memoryview]) -> int:
        done = self.inner.try_send(frames)
        if done and not self.writer.closed:
            now = time.time()
            write = self.writer.write
            for i in range(done):
                write(frames[i], now)
        return done

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.inner.run(task_status=task_status)

    async def aclose(self) -> None:
        self.writer.close()
        await self.inner.aclose()
