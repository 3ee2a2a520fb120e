"""UDP, fragmentation and ICMP errors against the Linux kernel in a namespace lab."""

from __future__ import annotations

import pytest
import trio
from kernel_scripts import FRAGMENT_FLOOD, TEARDROP, UDP_CONNREFUSED, UDP_ROUNDTRIP

import trio_netstack
from trio_netstack.testing.lab import Lab

pytestmark = pytest.mark.system("ping", "nc")


async def kernel(
    lab: Lab, *argv: str, stdin: bytes | None = None, timeout: float = 60
) -> tuple[int, str]:
    result = await trio.to_thread.run_sync(
        lambda: lab.run(*argv, check=False, timeout=timeout, input=stdin)
    )
    return result.returncode, result.stdout.decode() + result.stderr.decode()


async def echo_forever(sock: trio_netstack.UdpSocket) -> None:
    while True:
        data, peer = await sock.receive_from()
        await sock.send_to(data, peer)


@pytest.mark.parametrize("kind", ["tap", "veth"])
async def test_kernel_nc_gets_udp_echo(kind: str, request: pytest.FixtureRequest) -> None:
    lab: Lab = request.getfixturevalue(f"{kind}_lab")
    link = await lab.open_stack_link()
    async with trio_netstack.open_stack(link, ip=f"{lab.stack_ip}/24"), trio.open_nursery() as n:
        sock = trio_netstack.open_udp_socket(local_port=8888)
        n.start_soon(echo_forever, sock)
        code, out = await kernel(lab, "nc", "-u", "-w1", lab.stack_ip, "8888", stdin=b"hello!\n")
        assert out == "hello!\n", (code, out)
        # 60000 bytes from a kernel socket: fragmented both ways, returned intact.
        code, out = await kernel(lab, "python3", "-c", UDP_ROUNDTRIP, "60000", lab.stack_ip, "8888")
        assert out.split() == ["60000", "True", lab.stack_ip, "8888"], out
        n.cancel_scope.cancel()


async def test_kernel_large_pings_fragmented(veth_lab: Lab) -> None:
    link = await veth_lab.open_stack_link()
    async with trio_netstack.open_stack(link, ip=f"{veth_lab.stack_ip}/24") as stack:
        for size in ("5000", "30000"):
            code, out = await kernel(
                veth_lab, "ping", "-c", "3", "-i", "0.1", "-s", size, veth_lab.stack_ip
            )
            assert code == 0 and "3 received" in out, out
        stats = stack.statistics()
        assert stats.reassembly["reassembled"] == 6
        assert stats.ipv4["tx_fragmented"] == 6
        # And the stack's own large pings to the kernel.
        result = await trio_netstack.ping(veth_lab.kernel_ip, count=2, interval=0.1, size=30000)
        assert result.received == 2


async def test_udp_errors_both_ways(tap_lab: Lab) -> None:
    link = await tap_lab.open_stack_link()
    async with trio_netstack.open_stack(link, ip=f"{tap_lab.stack_ip}/24") as stack:
        _, out = await kernel(tap_lab, "python3", "-c", UDP_CONNREFUSED, tap_lab.stack_ip, "9999")
        assert out.strip() == "ECONNREFUSED", out
        assert stack.statistics().icmp["tx_error_3_3"] == 1
        with trio_netstack.open_udp_socket() as sock:
            await sock.connect((tap_lab.kernel_ip, 9))  # discard port, nobody listens
            await sock.send(b"ping?")
            with pytest.raises(ConnectionRefusedError), trio.fail_after(5):
                await sock.receive()


async def test_fragment_flood_and_teardrop(tap_lab: Lab) -> None:
    config = trio_netstack.StackConfig(
        ipv4=trio_netstack.Ipv4Config(
            reassembly=trio_netstack.ReassemblyConfig(max_bytes=512 * 1024)
        )
    )
    link = await tap_lab.open_stack_link()
    async with trio_netstack.open_stack(link, ip=f"{tap_lab.stack_ip}/24", config=config) as st:
        # Resolve the stack's MAC first so the flood is not stuck behind ARP.
        code, out = await kernel(tap_lab, "ping", "-c", "1", "-W", "2", tap_lab.stack_ip)
        assert code == 0, out
        code, out = await kernel(
            tap_lab,
            "python3",
            "-c",
            FRAGMENT_FLOOD,
            tap_lab.stack_ip,
            "30000",
            "1",
            tap_lab.kernel_ip,
            timeout=120,
        )
        assert out.strip() == "30000", out
        code, out = await kernel(
            tap_lab, "ping", "-c", "5", "-i", "0.05", "-W", "2", tap_lab.stack_ip
        )
        assert code == 0 and "5 received" in out, out
        stats = st.statistics()
        assert stats.reassembly["bytes_held"] <= 512 * 1024
        assert stats.reassembly["fragments"] > 10000
        assert stats.reassembly["evicted"] > 0
        code, out = await kernel(
            tap_lab, "python3", "-c", TEARDROP, tap_lab.stack_ip, tap_lab.kernel_ip
        )
        assert out.strip() == "sent"
        # Frames are processed in order: once a later ping is answered, the teardrop
        # fragments before it have been handled.
        code, out = await kernel(tap_lab, "ping", "-c", "1", "-W", "2", tap_lab.stack_ip)
        assert code == 0, out
        assert st.statistics().reassembly["overlaps"] == 10
