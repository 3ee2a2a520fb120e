"""TCP loss recovery against the Linux kernel: 20 MB each way through a lossy TAP.

Loss comes from both ends of the wire:

* nftables in the lab namespace drops 3% of the frames the stack sends (a
  ``netdev`` ingress chain on the TAP: the kernel never sees them) and 3% of the
  packets the kernel sends towards the stack (an ``inet`` output chain on the TAP's
  output). The second is a local drop that the kernel's TCP is told about (the
  transmit fails and the segment is sent again later), so it tests the kernel
  more than the stack; the stack's own impairment provides real losses in that
  direction.
* the stack's fault injection (``impair="loss=0.03,reorder=0.02,dup=0.01,seed=7"``)
  loses, reorders and duplicates 3/2/1% of the frames in each direction.

Two connections run at once, one each way, every byte checked by sha256 on both
ends. A capture taken on the kernel's side of the TAP, read by tshark, shows that
the stack recovered by fast retransmission (Wireshark's
``tcp.analysis.fast_retransmission``: a retransmission of the segment the kernel's
duplicate ACKs asked for, right after them) and that its ACKs carried SACK blocks.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from tcp_lab import Peer, digest, in_lab, receive_all, send_payload
from tcp_scripts import TCP_PEER

import trio_netstack
from trio_netstack.link import ImpairedLink
from trio_netstack.testing.lab import Lab

pytestmark = pytest.mark.system("nft", "tcpdump", "tshark")

MB = 1_000_000
SIZE = 20 * MB
LOSS_PERCENT = 3

# Random drops on the TAP, both ways, with counters. `numgen random mod 100 < 3` is
# 3% per packet; the lab namespace (and so these tables) is deleted after the test.
NFT_RULES = f"""
table netdev tnsloss_in {{
    chain from_stack {{
        type filter hook ingress device "tnstap0" priority 0;
        numgen random mod 100 < {LOSS_PERCENT} counter drop
    }}
}}
table inet tnsloss_out {{
    chain to_stack {{
        type filter hook output priority 0;
        oifname "tnstap0" numgen random mod 100 < {LOSS_PERCENT} counter drop
    }}
}}
"""


def nft_drops(lab: Lab) -> dict[str, int]:
    """Packets each of the loss chains has dropped so far."""
    out = lab.run("nft", "list", "ruleset").stdout.decode()
    found = dict(re.findall(r"chain (\w+) \{[^}]*?counter packets (\d+)", out))
    return {chain: int(n) for chain, n in found.items()}


async def start_capture(lab: Lab, pcap: Path) -> subprocess.Popen[bytes]:
    """tcpdump on the kernel's side of the TAP, headers only; returns once it listens."""
    proc = lab.popen(
        "tcpdump", "-i", lab.kernel_device, "-n", "-U", "-s", "128", "-B", "16384",
        "-Z", "root", "-w", str(pcap), "tcp",
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stderr is not None
    with trio.fail_after(20):
        for _ in range(20):
            line = await trio.to_thread.run_sync(proc.stderr.readline, abandon_on_cancel=True)
            if b"listening on" in line:
                return proc
            assert line, "tcpdump exited before listening"
    raise AssertionError("tcpdump never said it was listening")


def stop_capture(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.terminate()  # by PID: the tcpdump this test started; it flushes and exits
    _, err = proc.communicate(timeout=20)
    return " ".join(err.decode(errors="replace").split())


TSHARK_FIELDS = (
    "frame.time_relative",
    "ip.src",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq",
    "tcp.len",
    "tcp.options.sack_le",
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
)


def tshark_rows(pcap: Path) -> list[dict[str, str]]:
    argv = ["tshark", "-r", str(pcap), "-n", "-T", "fields", "-E", "separator=\t"]
    argv += ["-o", "tcp.relative_sequence_numbers:TRUE", "-Y", "tcp"]
    for field in TSHARK_FIELDS:
        argv += ["-e", field]
    done = subprocess.run(argv, capture_output=True, timeout=120, check=True)
    return [
        dict(zip(TSHARK_FIELDS, line.split("\t"), strict=True))
        for line in done.stdout.decode().splitlines()
    ]


async def test_20mb_each_way_through_loss(tap_lab: Lab, tmp_path: Path) -> None:
    lab = tap_lab
    pcap = tmp_path / "loss.pcap"
    await trio.to_thread.run_sync(lambda: lab.run("nft", "-f", "-", input=NFT_RULES.encode()))
    link = await lab.open_stack_link()
    async with trio_netstack.open_stack(
        link, ip=f"{lab.stack_ip}/24", impair="loss=0.03,reorder=0.02,dup=0.01,seed=7"
    ) as stack:
        assert isinstance(stack.link, ImpairedLink)
        capture = await start_capture(lab, pcap)
        try:
            sink = Peer(lab, TCP_PEER, "listen", "5001", "recv", "close")
            await sink.expect("listening")
            [listener] = await trio_netstack.open_tcp_listeners(5002)
            results: dict[str, Any] = {}

            async def up() -> None:
                """Stack -> kernel."""
                stream = await trio_netstack.connect_tcp(lab.kernel_ip, 5001)
                start = time.monotonic()
                await sink.expect("connected")
                results["up_sent"] = await send_payload(stream, SIZE, seed=31)
                await stream.send_eof()
                results["up_received"] = await sink.expect("received", timeout=300)
                results["up_seconds"] = time.monotonic() - start
                assert await stream.receive_some() == b""  # the kernel closed after reading
                results["up_stats"] = stream.statistics()
                results["up_port"] = stream.getsockname()[1]
                await stream.aclose()

            async def down() -> None:
                """Kernel -> stack."""
                source = Peer(
                    lab, TCP_PEER, "connect", lab.stack_ip, "5002", f"send:{SIZE}:32", "shut"
                )
                stream = await listener.accept()
                start = time.monotonic()
                results["down_received"] = await receive_all(stream)
                results["down_seconds"] = time.monotonic() - start
                await source.expect("connected")
                results["down_sent"] = await source.expect("sent")
                await source.expect("shut")
                results["down_stats"] = stream.statistics()
                await stream.aclose()
                assert await source.finish() == 0

            with trio.fail_after(300):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(up)
                    nursery.start_soon(down)
            await listener.aclose()
            assert await sink.finish() == 0
        finally:
            tcpdump = await trio.to_thread.run_sync(stop_capture, capture)
        impaired = dict(stack.link.impair_stats)
        tcp = dict(stack.statistics().tcp)
    drops = await trio.to_thread.run_sync(nft_drops, lab)
    await in_lab(lab, "nft", "delete", "table", "netdev", "tnsloss_in")
    await in_lab(lab, "nft", "delete", "table", "inet", "tnsloss_out")

    # Every byte, both ways, checked on both ends.
    _, n_up, got_up = results["up_received"]
    assert (int(n_up), got_up) == (SIZE, results["up_sent"]) and got_up == digest(SIZE, 31)
    _, n_sent, sent_down = results["down_sent"]
    assert results["down_received"] == (SIZE, sent_down) and int(n_sent) == SIZE
    assert sent_down == digest(SIZE, 32)

    up_stats: trio_netstack.TcpStatistics = results["up_stats"]
    down_stats: trio_netstack.TcpStatistics = results["down_stats"]
    up_s, down_s = results["up_seconds"], results["down_seconds"]
    print(
        f"\nstack -> kernel: {SIZE / MB:.0f} MB in {up_s:.2f} s = {SIZE / MB / up_s:.2f} MB/s; "
        f"retransmitted {up_stats.retransmitted_segments} segments, "
        f"{up_stats.fast_retransmits} fast retransmits, {up_stats.timeouts} timeouts; "
        f"counters {up_stats.counters}"
        f"\nkernel -> stack: {SIZE / MB:.0f} MB in {down_s:.2f} s = "
        f"{SIZE / MB / down_s:.2f} MB/s; counters {down_stats.counters}"
        f"\nnft drops {drops}; stack impairment {impaired}; stack tcp {tcp}; tcpdump: {tcpdump}"
    )
    # The losses happened where they were meant to.
    assert drops.get("from_stack", 0) > 0 and drops.get("to_stack", 0) > 0, drops
    assert impaired["lost"] > 0 and impaired["reordered"] > 0 and impaired["duplicated"] > 0
    # The stack recovered, and not only by timeouts.
    assert up_stats.retransmitted_segments > 0, up_stats
    assert up_stats.fast_retransmits > 0, up_stats
    assert down_stats.counters.get("out_of_order_segments", 0) > 0, down_stats

    # The capture: fast retransmissions by the stack, and SACK blocks in its segments.
    rows = await trio.to_thread.run_sync(tshark_rows, pcap)
    stack_ip = lab.stack_ip
    up_port = str(results["up_port"])
    ours = [r for r in rows if r["ip.src"] == stack_ip]
    data_up = [r for r in ours if r["tcp.srcport"] == up_port and int(r["tcp.len"] or 0) > 0]
    retrans = [r for r in data_up if r["tcp.analysis.retransmission"]]
    fast = [r for r in data_up if r["tcp.analysis.fast_retransmission"]]
    sack_down = [r for r in ours if r["tcp.srcport"] == "5002" and r["tcp.options.sack_le"]]
    sack_up = [r for r in ours if r["tcp.srcport"] == up_port and r["tcp.options.sack_le"]]
    print(
        f"capture: {len(rows)} TCP segments, {len(data_up)} data segments from the stack "
        f"on port {up_port}: {len(retrans)} retransmissions, {len(fast)} fast "
        f"retransmissions (tshark); the stack sent {len(sack_down)} segments with SACK "
        f"blocks on the kernel -> stack connection and {len(sack_up)} on the other"
    )
    assert rows, tcpdump
    assert fast, "tshark saw no fast retransmission from the stack"
    assert sack_down, "the stack never sent a SACK block for the kernel's data"
