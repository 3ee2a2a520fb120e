"""AF_PACKET links on a veth against the real kernel in a namespace lab (needs root)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
import trio
import trio.testing

from trio_netstack.link import RX_CSUM_TRUSTED, Link, LinkError, PacketLink, open_packet
from trio_netstack.testing.lab import Lab, create_lab

pytestmark = pytest.mark.system("ping", "ethtool")

STACK_MAC = bytes.fromhex("020000000002")
BROADCAST = b"\xff" * 6

# The kernel sends one UDP datagram to the stack; the stack's MAC is pinned in the
# kernel's neighbour table so no ARP is needed.
SEND_UDP = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"hello stack", (sys.argv[1], 9))
    """
)


def ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def arp_frame(op: int, sender_mac: bytes, sender_ip: str, target_ip: str, *, to: bytes) -> bytes:
    target_mac = bytes(6) if op == 1 else to
    arp = (
        b"\x00\x01\x08\x00\x06\x04"
        + op.to_bytes(2, "big")
        + sender_mac
        + ip4(sender_ip)
        + target_mac
        + ip4(target_ip)
    )
    return (to + sender_mac + b"\x08\x06" + arp).ljust(60, b"\0")


def parse_arp(frame: bytes) -> tuple[int, bytes, str, str] | None:
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    op = int.from_bytes(frame[20:22], "big")
    spa = ".".join(str(b) for b in frame[28:32])
    tpa = ".".join(str(b) for b in frame[38:42])
    return op, frame[22:28], spa, tpa


def internet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_checksum_ok(frame: bytes) -> bool:
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    udp = ip[ihl : int.from_bytes(ip[2:4], "big")]
    pseudo = ip[12:20] + b"\x00\x11" + len(udp).to_bytes(2, "big")
    return internet_checksum(pseudo + udp) == 0


async def collect(
    link: Link, match: Callable[[bytes], bool]
) -> tuple[tuple[bytes, int], list[tuple[bytes, int]]]:
    """Receive (bounded) until a frame matches; return it and everything seen."""
    seen: list[tuple[bytes, int]] = []
    with trio.fail_after(5):
        for _ in range(10_000):
            for frame, flags in await link.receive_batch():
                seen.append((frame, flags))
                if match(frame):
                    return (frame, flags), seen
    raise AssertionError("no matching frame among 10,000 batches")


def promiscuity(lab: Lab) -> int:
    shown = lab.run("ip", "-d", "link", "show", lab.stack_device).stdout.decode()
    found = re.search(r"promiscuity (\d+)", shown)
    assert found is not None, shown
    return int(found.group(1))


def sysfs(lab: Lab, dev: str, attr: str) -> str:
    return lab.run("cat", f"/sys/class/net/{dev}/{attr}").stdout.decode().strip()


async def test_identity_of_the_interface() -> None:
    with create_lab("veth", mtu=1400) as lab:
        async with await lab.open_stack_link() as link:
            assert isinstance(link, PacketLink)
            assert link.name == "tnsveth-s" and link.mtu == 1400
            assert link.hw_address is not None
            assert link.hw_address.hex(":") == sysfs(lab, "tnsveth-s", "address")
            assert not link.promiscuous


async def test_receives_the_kernels_arp_request(veth_lab: Lab) -> None:
    async with await veth_lab.open_stack_link(stack_mac=STACK_MAC) as link:
        veth_lab.popen(
            "ping", "-c", "1", "-W", "1", veth_lab.stack_ip,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        (frame, flags), _ = await collect(
            link,
            lambda f: parse_arp(f) == (1, f[6:12], veth_lab.kernel_ip, veth_lab.stack_ip),
        )
        assert frame[:6] == BROADCAST and flags == 0
        assert frame[6:12].hex(":") == sysfs(veth_lab, "tnsveth-k", "address")


async def test_foreign_mac_gets_replies_and_own_sends_never_come_back(veth_lab: Lab) -> None:
    async with await veth_lab.open_stack_link(stack_mac=STACK_MAC) as link:
        assert isinstance(link, PacketLink) and link.promiscuous
        request = arp_frame(1, STACK_MAC, veth_lab.stack_ip, veth_lab.kernel_ip, to=BROADCAST)
        await link.send_batch([request])
        assert link.stats.tx_frames == 1
        (reply, _), seen = await collect(
            link, lambda f: (parse_arp(f) or (0,))[0] == 2 and f[:6] == STACK_MAC
        )
        assert parse_arp(reply) == (2, reply[6:12], veth_lab.kernel_ip, veth_lab.stack_ip)
        assert not [f for f, _ in seen if f[6:12] == STACK_MAC]
        assert (
            "02:00:00:00:00:02"
            in veth_lab.run("ip", "neigh", "show", veth_lab.stack_ip).stdout.decode()
        )


async def test_frames_leaving_the_interface_are_not_received(veth_lab: Lab) -> None:
    # The kernel never loops a packet socket's sends back to that same socket;
    # the PACKET_OUTGOING copies a socket does get are other senders' frames
    # leaving the interface (the kernel's own traffic, another packet socket).
    # Those are not frames arriving from the wire, so the link must not return them.
    other_mac = bytes.fromhex("020000000077")
    async with (
        await veth_lab.open_stack_link(stack_mac=STACK_MAC) as link,
        await veth_lab.open_stack_link(stack_mac=other_mac) as other,
    ):
        # Local experimental EtherType to a foreign unicast MAC: the kernel at
        # the far end ignores these, so only an outgoing copy could show them.
        junk = [other_mac + other_mac + b"\x88\xb5" + bytes([i]) * 46 for i in range(10)]
        await other.send_batch(junk)
        request = arp_frame(1, STACK_MAC, veth_lab.stack_ip, veth_lab.kernel_ip, to=BROADCAST)
        await link.send_batch([request])
        _, seen = await collect(
            link, lambda f: (parse_arp(f) or (0,))[0] == 2 and f[:6] == STACK_MAC
        )
        assert not [f for f, _ in seen if f in junk or f == request]
        assert link.stats.rx_frames == len(seen)


async def test_promiscuous_membership_lives_with_the_socket(veth_lab: Lab) -> None:
    assert promiscuity(veth_lab) == 0
    async with await veth_lab.open_stack_link(stack_mac=STACK_MAC):
        assert promiscuity(veth_lab) == 1
    assert promiscuity(veth_lab) == 0
    own_mac = bytes.fromhex(sysfs(veth_lab, "tnsveth-s", "address").replace(":", ""))
    async with await veth_lab.open_stack_link(stack_mac=own_mac) as link:
        assert isinstance(link, PacketLink) and not link.promiscuous
        assert promiscuity(veth_lab) == 0


async def kernel_udp_to_stack(lab: Lab, link: Link) -> tuple[bytes, int]:
    lab.run("ip", "neigh", "replace", lab.stack_ip, "lladdr", STACK_MAC.hex(":"),
            "dev", lab.kernel_device, "nud", "permanent")  # fmt: skip
    lab.run(sys.executable, "-c", SEND_UDP, lab.stack_ip)
    got, _ = await collect(link, lambda f: f[12:14] == b"\x08\x00" and f[23] == 17)
    assert got[0][:6] == STACK_MAC and got[0].endswith(b"hello stack")
    return got


async def test_checksum_offload_is_reported_as_trusted(veth_lab: Lab) -> None:
    async with await veth_lab.open_stack_link(stack_mac=STACK_MAC) as link:
        frame, flags = await kernel_udp_to_stack(veth_lab, link)
    # veth does checksum offload: the kernel leaves the UDP checksum unfinished
    # (CHECKSUM_PARTIAL) and AF_PACKET says so with TP_STATUS_CSUMNOTREADY.
    assert flags == RX_CSUM_TRUSTED
    assert not udp_checksum_ok(frame)


async def test_without_offload_checksums_are_complete_and_not_flagged(veth_lab: Lab) -> None:
    veth_lab.run("ethtool", "-K", veth_lab.kernel_device, "tx", "off")
    async with await veth_lab.open_stack_link(stack_mac=STACK_MAC) as link:
        frame, flags = await kernel_udp_to_stack(veth_lab, link)
    assert flags == 0
    assert udp_checksum_ok(frame)


async def test_one_wakeup_drains_many_frames(veth_lab: Lab) -> None:
    async with await veth_lab.open_stack_link(stack_mac=STACK_MAC, max_batch=8) as link:
        n = 20
        await link.send_batch(
            [
                arp_frame(1, STACK_MAC, f"192.0.2.{100 + i}", veth_lab.kernel_ip, to=BROADCAST)
                for i in range(n)
            ]
        )
        replies: set[str] = set()
        sizes: list[int] = []
        with trio.fail_after(5):
            while len(replies) < n:
                batch = await link.receive_batch()
                sizes.append(len(batch))
                for frame, _ in batch:
                    arp = parse_arp(frame)
                    if arp is not None and arp[0] == 2:
                        replies.add(arp[3])
        assert len(replies) == n
        assert max(sizes) == 8 and len(sizes) < n


async def test_refused_frames_are_counted_not_raised(veth_lab: Lab) -> None:
    async with await veth_lab.open_stack_link() as link:
        await link.send_batch([bytes(1500 + 14 + 100), b"\x01"])
        assert link.stats.tx_dropped == 2 and link.stats.tx_frames == 0


async def test_brings_a_down_interface_up_ready_for_use(veth_lab: Lab) -> None:
    request = arp_frame(1, STACK_MAC, veth_lab.stack_ip, veth_lab.kernel_ip, to=BROADCAST)
    for _ in range(5):
        veth_lab.run("ip", "link", "set", veth_lab.stack_device, "down")
        async with await veth_lab.open_stack_link(stack_mac=STACK_MAC) as link:
            shown = veth_lab.run("ip", "link", "show", veth_lab.stack_device).stdout.decode()
            assert ",UP" in shown
            # The kernel's side came back too and answers at once (open_packet
            # waited until the kernel really transmits on the pair again).
            await link.send_batch([request])
            await collect(link, lambda f: (parse_arp(f) or (0,))[0] == 2 and f[:6] == STACK_MAC)


async def test_close_wakes_a_blocked_receiver_and_is_idempotent(veth_lab: Lab) -> None:
    link = await veth_lab.open_stack_link()
    errors: list[BaseException] = []

    async def receiver() -> None:
        try:
            await link.receive_batch()
        except trio.ClosedResourceError as exc:
            errors.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            await link.aclose()
    assert len(errors) == 1
    await link.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_batch()
    with pytest.raises(trio.ClosedResourceError):
        await link.send_batch([bytes(60)])


def test_errors_are_clear(veth_lab: Lab) -> None:
    ns = veth_lab.netns
    with pytest.raises(LinkError, match=rf"unknown interface 'nosuch0' in namespace '{ns}'"):
        open_packet("nosuch0", netns=ns)
    with pytest.raises(LinkError, match=r"'lo' .* is not an Ethernet interface"):
        open_packet("lo", netns=ns)
    with pytest.raises(LinkError, match="network namespace 'tns-missing-x' does not exist"):
        open_packet("eth0", netns="tns-missing-x")
    with pytest.raises(ValueError, match="6 bytes"):
        open_packet("tnsveth-s", netns=ns, stack_mac=b"\x02")


def test_without_root_the_error_says_so(veth_lab: Lab) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv")
    code = textwrap.dedent(
        """
        from trio_netstack.link import LinkError, open_packet
        try:
            open_packet("tnsveth-s")
        except LinkError as exc:
            print(exc)
        """
    )
    veth_lab.run("ip", "link", "set", veth_lab.stack_device, "up")
    done = veth_lab.run(
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
        sys.executable, "-c", code,
    )  # fmt: skip
    assert "AF_PACKET needs root (CAP_NET_RAW)" in done.stdout.decode()
