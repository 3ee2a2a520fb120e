"""The stack against the Linux kernel in a namespace lab: ARP and ICMP echo both ways."""

from __future__ import annotations

import re

import pytest
import trio

import trio_netstack
from trio_netstack.testing.lab import Lab

pytestmark = pytest.mark.system("ping")


async def kernel(lab: Lab, *argv: str, timeout: float = 60) -> tuple[int, str]:
    result = await trio.to_thread.run_sync(lambda: lab.run(*argv, check=False, timeout=timeout))
    return result.returncode, result.stdout.decode() + result.stderr.decode()


def loss_line(output: str) -> tuple[int, int]:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert m, output
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("kind", ["tap", "veth"])
async def test_kernel_pings_stack_without_loss(kind: str, request: pytest.FixtureRequest) -> None:
    lab: Lab = request.getfixturevalue(f"{kind}_lab")
    link = await lab.open_stack_link()
    async with trio_netstack.open_stack(link, ip=f"{lab.stack_ip}/24") as stack:
        code, out = await kernel(lab, "ping", "-c", "50", "-i", "0.02", "-W", "2", lab.stack_ip)
        assert code == 0, out
        assert loss_line(out) == (50, 50), out
        code, out = await kernel(lab, "ping", "-c", "5", "-i", "0.05", "-s", "1400", lab.stack_ip)
        assert code == 0 and loss_line(out) == (5, 5), out
        assert "1408 bytes from 192.0.2.2" in out
        stats = stack.statistics()
        assert stats.icmp["tx_echo_reply"] == 55
        assert stats.arp["tx_reply"] >= 1
        # The kernel learnt the stack's MAC from our ARP reply.
        code, out = await kernel(lab, "ip", "neigh", "show", lab.stack_ip)
        assert stack.mac_address in out


@pytest.mark.parametrize("kind", ["tap", "veth"])
async def test_stack_pings_kernel(kind: str, request: pytest.FixtureRequest) -> None:
    lab: Lab = request.getfixturevalue(f"{kind}_lab")
    link = await lab.open_stack_link()
    async with trio_netstack.open_stack(link, ip=f"{lab.stack_ip}/24") as stack:
        result = await trio_netstack.ping(lab.kernel_ip, count=5, interval=0.05, timeout=2)
        assert result.received == 5
        assert all(r.ttl == 64 and r.address == lab.kernel_ip for r in result.replies)
        big = await trio_netstack.ping(lab.kernel_ip, count=2, interval=0.05, size=1472)
        assert big.received == 2
        assert [n.ip for n in stack.neighbours()] == [0xC0000201]


async def test_unanswered_arp_gives_host_unreachable(tap_lab: Lab) -> None:
    link = await tap_lab.open_stack_link()
    async with trio_netstack.open_stack(link, ip=f"{tap_lab.stack_ip}/24"):
        with trio.fail_after(10):
            result = await trio_netstack.ping("192.0.2.77", count=1, timeout=5)
        assert result.received == 0
        assert [e.description for e in result.errors] == ["Destination Host Unreachable"]
