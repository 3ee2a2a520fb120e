#!/usr/bin/env python3
"""Developer script: the ping RTT floor of any Trio program on a TAP device (root only).

A minimal responder (ARP and echo, no stack) drains the TAP per wake-up and answers
straight away; the kernel pings it at several intervals. What it measures is what
waking the process and one TAP round trip cost on this machine, the part of the
bench's ping rows that no stack written on Trio can remove::

    python tools/bench/ping_floor.py
"""

from __future__ import annotations

import os
import sys

import trio

from trio_netstack.link import open_tap
from trio_netstack.testing.lab import create_lab
from trio_netstack.wire.checksum import internet_checksum

OWN_MAC = bytes.fromhex("020000000002")
OWN_IP = bytes([192, 0, 2, 2])


def answer(frame: bytes) -> bytes | None:
    """The reply to an ARP request or ICMP echo request for OWN_IP, else None."""
    if frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x01" and frame[38:42] == OWN_IP:
        arp = frame[14:20] + b"\x00\x02" + OWN_MAC + OWN_IP + frame[22:28] + frame[28:32]
        return frame[6:12] + OWN_MAC + b"\x08\x06" + arp
    if frame[12:14] == b"\x08\x00" and frame[23] == 1 and frame[34] == 8 and frame[30:34] == OWN_IP:
        ip = bytearray(frame[14:34])
        ip[12:16], ip[16:20], ip[10:12] = frame[30:34], frame[26:30], b"\0\0"
        ip[10:12] = internet_checksum(bytes(ip)).to_bytes(2, "big")
        icmp = bytearray(frame[34:])
        icmp[0], icmp[2:4] = 0, b"\0\0"
        icmp[2:4] = internet_checksum(bytes(icmp)).to_bytes(2, "big")
        return frame[6:12] + OWN_MAC + b"\x08\x00" + bytes(ip) + bytes(icmp)
    return None


async def responder(fd: int) -> None:
    while True:
        await trio.lowlevel.wait_readable(fd)
        while True:
            try:
                frame = os.read(fd, 65536)
            except BlockingIOError:
                break
            reply = answer(frame)
            if reply is not None:
                os.write(fd, reply)


async def main() -> None:
    if os.geteuid() != 0:
        sys.exit("ping_floor.py needs root (network namespace, TAP device)")
    with create_lab("tap") as lab:
        link = open_tap(lab.stack_device, netns=lab.netns)
        async with link, trio.open_nursery() as nursery:
            nursery.start_soon(responder, link.fileno())
            for interval, count in (("0.01", "200"), ("0.002", "500"), ("0.0005", "2000")):
                argv = ["ping", "-c", count, "-i", interval, "-q", "-W", "2", "192.0.2.2"]
                r = await trio.run_process(
                    ["ip", "netns", "exec", lab.netns, *argv], capture_stdout=True, check=False
                )
                lines = r.stdout.decode().strip().splitlines()
                print(f"interval {interval} s: {lines[-1] if lines else 'no output'}")
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
