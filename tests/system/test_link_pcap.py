"""A capture of real traffic in a lab, read back by tshark and tcpdump (needs root)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from trio_netstack.link import PcapLink, read_pcap
from trio_netstack.testing.lab import Lab

pytestmark = pytest.mark.system("tshark", "tcpdump")

STACK_MAC = bytes.fromhex("020000000002")


def arp_request(sender_ip: str, target_ip: str) -> bytes:
    def ip4(text: str) -> bytes:
        return bytes(int(x) for x in text.split("."))

    arp = (
        b"\x00\x01\x08\x00\x06\x04\x00\x01" + STACK_MAC + ip4(sender_ip) + bytes(6) + ip4(target_ip)
    )
    return (b"\xff" * 6 + STACK_MAC + b"\x08\x06" + arp).ljust(60, b"\0")


@pytest.mark.parametrize("kind", ["tap", "veth"])
async def test_capture_of_an_arp_exchange(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    lab: Lab = request.getfixturevalue(f"{kind}_lab")
    path = tmp_path / f"{kind}.pcap"
    link = PcapLink(await lab.open_stack_link(stack_mac=STACK_MAC), path)
    async with link:
        await link.send_batch([arp_request(lab.stack_ip, lab.kernel_ip)])
        with trio.fail_after(5):
            for _ in range(10_000):
                batch = await link.receive_batch()
                if any(f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" for f, _ in batch):
                    break
    frames = [f for _, f in read_pcap(path)]
    assert frames[0] == arp_request(lab.stack_ip, lab.kernel_ip)
    assert len(frames) >= 2

    for argv in (["tshark", "-n", "-r", str(path)], ["tcpdump", "-n", "-r", str(path)]):
        with trio.fail_after(60):
            done = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False
            )
        out, err = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == 0, err
        assert "ARP" in out, out
        assert lab.kernel_ip in out and lab.stack_ip in out
        # Neither tool complained about the file itself.
        assert "truncated" not in err.lower() and "appears to be damaged" not in err
    with trio.fail_after(60):
        tshark = await trio.run_process(
            ["tshark", "-n", "-r", str(path), "-Y", "arp.opcode == 2"], capture_stdout=True
        )
    assert f"{lab.kernel_ip} is at" in tshark.stdout.decode()
