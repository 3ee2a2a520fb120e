"""TAP checksum/TSO offload (IFF_VNET_HDR): the kernel hands the stack large TCP segments."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import trio

import trio_netstack
from trio_netstack.link import read_pcap
from trio_netstack.link.tap import TapLink
from trio_netstack.testing.lab import Lab

pytestmark = pytest.mark.system("nc", "ping")

SIZE = 20 * 1024 * 1024


async def test_large_segments_from_the_kernel_arrive_intact(tap_lab: Lab) -> None:
    link = await tap_lab.open_stack_link(offload=True)
    assert isinstance(link, TapLink) and link.offload
    async with trio_netstack.open_stack(link, ip=f"{tap_lab.stack_ip}/24") as stack:
        digest: dict[str, str] = {}
        finished = trio.Event()

        async def sink(stream: trio_netstack.TcpStream) -> None:
            h = hashlib.sha256()
            async with stream:
                while data := await stream.receive_some():
                    h.update(data)
            digest["got"] = h.hexdigest()
            finished.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(trio_netstack.serve_tcp, sink, 9000)
            with trio.fail_after(120):
                done = await trio.to_thread.run_sync(
                    lambda: tap_lab.run(
                        "sh",
                        "-c",
                        f"head -c {SIZE} /dev/zero | nc -N {tap_lab.stack_ip} 9000",
                        check=False,
                        timeout=120,
                    )
                )
            assert done.returncode == 0, done.stderr
            with trio.fail_after(30):
                await finished.wait()
            nursery.cancel_scope.cancel()
        assert digest["got"] == hashlib.sha256(bytes(SIZE)).hexdigest()
        # The kernel sent super-segments (GSO) rather than MTU-sized frames.
        assert link.gso_frames > 0
        assert stack.statistics().link["rx_frames"] < SIZE // 1448
        # Everything else still works on an offloading TAP: ping, and UDP from the kernel.
        ping = await trio.to_thread.run_sync(
            lambda: tap_lab.run(
                "ping", "-c", "3", "-i", "0.05", "-s", "3000", tap_lab.stack_ip, check=False
            )
        )
        assert ping.returncode == 0, ping.stdout
        with trio_netstack.open_udp_socket(local_port=8888) as sock:
            proc = tap_lab.popen("nc", "-u", "-w1", tap_lab.stack_ip, "8888", stdin=subprocess.PIPE)
            assert proc.stdin is not None
            proc.stdin.write(b"hello offload\n")
            proc.stdin.close()
            with trio.fail_after(10):
                data, _ = await sock.receive_from()
            assert data == b"hello offload\n"
            await trio.to_thread.run_sync(lambda: proc.wait(timeout=10))


async def test_stack_super_segments_cut_by_the_kernel_arrive_intact(tap_lab: Lab) -> None:
    payload = hashlib.sha256(b"tso").digest() * (SIZE // 32)  # not all zeros
    link = await tap_lab.open_stack_link(offload=True)
    assert isinstance(link, TapLink)
    async with trio_netstack.open_stack(link, ip=f"{tap_lab.stack_ip}/24"):
        proc = tap_lab.popen("sh", "-c", "nc -l -N 7000 | sha256sum", stdout=subprocess.PIPE)
        try:
            await trio.to_thread.run_sync(tap_lab.wait_listening, 7000)
            with trio.fail_after(120):
                async with trio_netstack.open_tcp_stream(tap_lab.kernel_ip, 7000) as stream:
                    for i in range(0, len(payload), 1 << 20):
                        await stream.send_all(payload[i : i + (1 << 20)])
                    await stream.send_eof()
                    assert await stream.receive_some() == b""
                    stats = stream.statistics()
                out, _ = await trio.to_thread.run_sync(lambda: proc.communicate(timeout=60))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        assert out.split()[0].decode() == hashlib.sha256(payload).hexdigest()
        # The stack handed the kernel super-segments (TSO) and nothing had to be resent.
        assert link.tso_frames > 0
        assert stats.retransmitted_segments == 0


async def test_open_stack_with_pcap_and_impairment_still_sends_super_segments(
    tap_lab: Lab, tmp_path: Path
) -> None:
    # The stack reads the device's capabilities from the outermost link: the pcap and
    # impairment wrappers must pass them on, or TSO would quietly go off.
    payload = hashlib.sha256(b"wrapped").digest() * (4 * 1024 * 1024 // 32)
    path = tmp_path / "tso.pcap"
    async with trio_netstack.open_stack(
        tap=tap_lab.stack_device,
        netns=tap_lab.netns,
        ip=f"{tap_lab.stack_ip}/24",
        offload=True,
        pcap=str(path),
        impair="seed=1",
    ) as stack:
        assert stack.link.capabilities.tso_max_payload == 64000
        mac = stack.mac
        mtu = stack.link.mtu
        proc = tap_lab.popen("sh", "-c", "nc -l -N 7001 | sha256sum", stdout=subprocess.PIPE)
        try:
            await trio.to_thread.run_sync(tap_lab.wait_listening, 7001)
            with trio.fail_after(120):
                async with trio_netstack.open_tcp_stream(tap_lab.kernel_ip, 7001) as stream:
                    await stream.send_all(payload)
                    await stream.send_eof()
                    assert await stream.receive_some() == b""
                out, _ = await trio.to_thread.run_sync(lambda: proc.communicate(timeout=60))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert out.split()[0].decode() == hashlib.sha256(payload).hexdigest()
    sent = [frame for _, frame in read_pcap(path) if frame[6:12] == mac]
    large = [frame for frame in sent if len(frame) > mtu + 14]
    # Most of 4 MiB left as super-segments: far fewer frames than MTU-sized segments.
    assert large, f"no frame above the MTU among {len(sent)} sent"
    assert sum(len(frame) for frame in large) > len(payload) // 2
    assert len(sent) < len(payload) // 1448 // 4
