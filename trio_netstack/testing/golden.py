"""Frames captured from the Linux kernel (6.x) in a namespace with tcpdump.

Public test data, like ``trio.testing``'s helpers: parsers and protocol machines are
checked against what a real kernel sent, here and in code that builds on the stack.

Kernel 02:00:00:00:00:0a at 192.0.2.1 asks for 192.0.2.2 (02:00:00:00:00:0b),
then pings it with `ping -c 1 -s 16` (icmp id 0x0d59, seq 1). Linux sends
both unpadded (42 and 58 bytes); the wire pads them to 60.
"""

from __future__ import annotations

__all__ = ["KERNEL_MAC", "LINUX_ARP_REQUEST", "LINUX_ECHO_REQUEST", "STACK_MAC"]

KERNEL_MAC = bytes.fromhex("02000000000a")
STACK_MAC = bytes.fromhex("02000000000b")

LINUX_ARP_REQUEST = bytes.fromhex(
    "ffffffffffff02000000000a0806"  # Ethernet: broadcast, from the kernel, ARP
    "000108000604"  # Ethernet/IPv4, hlen 6, plen 4
    "0001"  # request
    "02000000000ac0000201"  # sender 02:..:0a 192.0.2.1
    "000000000000c0000202"  # target ?? 192.0.2.2
)

LINUX_ECHO_REQUEST = bytes.fromhex(
    "02000000000b02000000000a0800"
    "4500002c52fe4000400163cfc0000201c0000202"  # IPv4: id 0x52fe, DF, ttl 64, ICMP
    "0800392e0d590001"  # echo request, id 0x0d59, seq 1
    "2716026b0000000084f6030000000000"  # 16 bytes of timestamp
)
