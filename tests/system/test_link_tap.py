"""TAP links against the real kernel in a namespace lab (needs root)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
import trio
import trio.testing

from trio_netstack.link import Link, LinkError, TapLink, open_tap
from trio_netstack.testing.lab import Lab, create_lab

pytestmark = pytest.mark.system("ping")

STACK_MAC = bytes.fromhex("020000000002")
BROADCAST = b"\xff" * 6


def ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def arp_frame(op: int, sender_mac: bytes, sender_ip: str, target_ip: str, *, to: bytes) -> bytes:
    """An Ethernet II ARP frame (RFC 826), padded to the 60-byte minimum."""
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
    """(op, sender MAC, sender IP, target IP) of an ARP frame, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    op = int.from_bytes(frame[20:22], "big")
    spa = ".".join(str(b) for b in frame[28:32])
    tpa = ".".join(str(b) for b in frame[38:42])
    return op, frame[22:28], spa, tpa


async def wait_for_frame(link: Link, want: str, match: Callable[[bytes], bool]) -> bytes:
    """Receive (bounded in time and count) until ``match(frame)`` is true."""
    with trio.fail_after(5):
        for _ in range(10_000):
            for frame, _flags in await link.receive_batch():
                if match(frame):
                    return frame
    raise AssertionError(f"no {want} among 10,000 batches")


def kernel_neighbour(lab: Lab, ip: str) -> str:
    return lab.run("ip", "neigh", "show", ip, "dev", lab.kernel_device).stdout.decode()


def link_show(lab: Lab, dev: str, *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return lab.run("ip", "-d", "link", "show", dev, check=check)


async def test_receives_the_kernels_arp_request(tap_lab: Lab) -> None:
    async with await tap_lab.open_stack_link() as link:
        assert isinstance(link, TapLink)
        assert link.hw_address is None and link.mtu == 1500 and link.name == "tnstap0"
        tap_lab.popen(
            "ping", "-c", "1", "-W", "1", tap_lab.stack_ip,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        frame = await wait_for_frame(
            link,
            "ARP request for the stack's address",
            lambda f: parse_arp(f) == (1, f[6:12], tap_lab.kernel_ip, tap_lab.stack_ip),
        )
        assert frame[:6] == BROADCAST
        assert link.stats.rx_frames >= 1 and link.stats.rx_batches >= 1


async def test_arp_request_from_the_stack_teaches_the_kernel(tap_lab: Lab) -> None:
    async with await tap_lab.open_stack_link() as link:
        request = arp_frame(1, STACK_MAC, tap_lab.stack_ip, tap_lab.kernel_ip, to=BROADCAST)
        await link.send_batch([request])
        assert link.stats.tx_frames == 1 and link.stats.tx_bytes == 60
        reply = await wait_for_frame(
            link,
            "ARP reply from the kernel",
            lambda f: (parse_arp(f) or (0,))[0] == 2 and f[:6] == STACK_MAC,
        )
        _, kernel_mac, spa, tpa = parse_arp(reply) or (0, b"", "", "")
        assert (spa, tpa) == (tap_lab.kernel_ip, tap_lab.stack_ip)
        # The kernel creates the neighbour entry before it sends the reply
        # (net/ipv4/arp.c arp_process), so one look is enough: no polling.
        assert "02:00:00:00:00:02" in kernel_neighbour(tap_lab, tap_lab.stack_ip)
        assert kernel_mac.hex(":") in link_show(tap_lab, "tnstap0").stdout.decode()


async def test_the_first_frame_after_attaching_is_answered() -> None:
    # Attaching gives a fresh TAP its carrier, but the kernel drops what it sends
    # on it until its linkwatch worker has run; open_tap waits for that. Without
    # the wait about one fresh lab in three lost the reply, so 15 labs catch it.
    for _ in range(15):
        with create_lab("tap") as lab:
            request = arp_frame(1, STACK_MAC, lab.stack_ip, lab.kernel_ip, to=BROADCAST)
            async with await lab.open_stack_link() as link:
                await link.send_batch([request])
                await wait_for_frame(
                    link,
                    "ARP reply",
                    lambda f: (parse_arp(f) or (0,))[0] == 2 and f[:6] == STACK_MAC,
                )


async def test_one_wakeup_drains_many_frames(tap_lab: Lab) -> None:
    async with await tap_lab.open_stack_link(max_batch=8) as link:
        n = 20
        requests = [
            arp_frame(1, STACK_MAC, f"192.0.2.{100 + i}", tap_lab.kernel_ip, to=BROADCAST)
            for i in range(n)
        ]
        await link.send_batch(requests)
        replies: set[str] = set()
        sizes: list[int] = []
        with trio.fail_after(5):
            while len(replies) < n:
                batch = await link.receive_batch()
                sizes.append(len(batch))
                for frame, flags in batch:
                    arp = parse_arp(frame)
                    if arp is not None and arp[0] == 2:
                        replies.add(arp[3])
                    assert flags == 0  # a TAP without vnet headers reports no offload
        assert replies == {f"192.0.2.{100 + i}" for i in range(n)}
        assert max(sizes) <= 8
        # The replies queue up while we send, so the wake-ups are far fewer
        # than the frames: at least one batch was full.
        assert max(sizes) == 8 and len(sizes) < n


async def test_try_send_and_receive_ready_never_wait(tap_lab: Lab) -> None:
    # The stack's fast paths: a write from the producing task, a poll per pass.
    link = await tap_lab.open_stack_link()
    async with link:
        n = 5
        requests = [
            arp_frame(1, STACK_MAC, f"192.0.2.{120 + i}", tap_lab.kernel_ip, to=BROADCAST)
            for i in range(n)
        ]
        assert link.try_send(requests) == n
        assert (link.stats.tx_frames, link.stats.tx_bytes) == (n, 60 * n)
        replies: set[str] = set()
        with trio.fail_after(5):
            while len(replies) < n:
                batch = link.receive_ready() or await link.receive_batch()
                for frame, _flags in batch:
                    arp = parse_arp(frame)
                    if arp is not None and arp[0] == 2:
                        replies.add(arp[3])
        assert replies == {f"192.0.2.{120 + i}" for i in range(n)}
    with pytest.raises(trio.ClosedResourceError):
        link.receive_ready()
    with pytest.raises(trio.ClosedResourceError):
        link.try_send(requests)


async def test_errors_are_clear(tap_lab: Lab) -> None:
    ns = tap_lab.netns
    with pytest.raises(LinkError, match=r"'nosuch0' does not exist .*ip tuntap add"):
        open_tap("nosuch0", netns=ns, create=False)
    with pytest.raises(LinkError, match=r"'lo' .* exists but is not a \(single-queue\) TAP"):
        open_tap("lo", netns=ns)
    with pytest.raises(LinkError, match=r"network namespace 'tns-missing-x' does not exist"):
        open_tap("tap0", netns="tns-missing-x")
    with pytest.raises(LinkError, match="invalid interface name"):
        open_tap("a-name-far-too-long-for-linux", netns=ns)
    async with await tap_lab.open_stack_link():
        with pytest.raises(LinkError, match="busy: another process has it open"):
            open_tap(tap_lab.stack_device, netns=ns)


async def test_creates_a_transient_tap_that_goes_away(tap_lab: Lab) -> None:
    link = open_tap("tnstmp0", netns=tap_lab.netns)
    try:
        shown = link_show(tap_lab, "tnstmp0").stdout.decode()
        assert "tun type tap" in shown and ",UP" in shown
        assert "persist off" in shown
    finally:
        await link.aclose()
    assert link_show(tap_lab, "tnstmp0", check=False).returncode != 0
    host_links = await trio.run_process(["ip", "link"], capture_stdout=True)
    assert "tnstmp0" not in host_links.stdout.decode()


async def test_brings_a_down_device_up_and_reads_its_mtu(tap_lab: Lab) -> None:
    tap_lab.run("ip", "link", "set", "tnstap0", "down", "mtu", "1400")
    assert ",UP" not in link_show(tap_lab, "tnstap0").stdout.decode()
    async with await tap_lab.open_stack_link() as link:
        assert link.mtu == 1400
        assert ",UP" in link_show(tap_lab, "tnstap0").stdout.decode()


async def test_writes_to_a_down_device_are_counted_drops(tap_lab: Lab) -> None:
    async with await tap_lab.open_stack_link() as link:
        tap_lab.run("ip", "link", "set", "tnstap0", "down")
        frame = arp_frame(1, STACK_MAC, tap_lab.stack_ip, tap_lab.kernel_ip, to=BROADCAST)
        await link.send_batch([frame, frame])  # the kernel answers EIO: no exception
        assert link.stats.tx_dropped == 2 and link.stats.tx_frames == 0
        await link.send_batch([b"\x01\x02"])  # a runt: EINVAL, also just a drop
        assert link.stats.tx_dropped == 3


async def test_close_wakes_a_blocked_receiver_and_is_idempotent(tap_lab: Lab) -> None:
    link = await tap_lab.open_stack_link()
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


async def test_deleting_the_device_breaks_the_link(tap_lab: Lab) -> None:
    async with await tap_lab.open_stack_link() as link:
        tap_lab.run("ip", "link", "del", "tnstap0")
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="deleted"):
            await link.receive_batch()


def test_without_root_the_error_says_so(tap_lab: Lab) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv")
    code = textwrap.dedent(
        """
        from trio_netstack.link import LinkError, open_tap
        try:
            open_tap("tnstap0", create=False)
        except LinkError as exc:
            print(exc)
        """
    )
    done = tap_lab.run(
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
        sys.executable, "-c", code,
    )  # fmt: skip
    assert "TAP device needs root (CAP_NET_ADMIN)" in done.stdout.decode()
