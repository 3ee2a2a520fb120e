"""TCP against the Linux kernel in a namespace lab: bulk data, options, windows, closes.

The kernel's side is a small Python program using the kernel's own sockets
(tcp_scripts.TCP_PEER and friends, run with ``ip netns exec``); it prints one line
per step, and the tests wait for those lines, for counters of the stack, or for
what ``ss``/``nft`` report in the namespace, never for a fixed time.
"""

from __future__ import annotations

import gc
import re
import signal
import socket
import subprocess
import time
import tracemalloc
from collections import Counter
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import trio
from tcp_lab import (
    Peer,
    digest,
    frames_towards_stack,
    in_lab,
    kernel_counter,
    kernel_retransmits,
    receive_all,
    send_payload,
    tcp_counters,
    wait_until,
)
from tcp_scripts import (
    TCP_CONNREFUSED,
    TCP_MANY_CLIENT,
    TCP_MANY_SERVER,
    TCP_PEER,
)

import trio_netstack
from trio_netstack.link import PacketLink
from trio_netstack.link.base import Link
from trio_netstack.proto.tcp.demux import DemuxConfig
from trio_netstack.testing.lab import Lab

pytestmark = pytest.mark.system("ss", "nstat", "ethtool")

MB = 1_000_000
BULK = 100 * MB


def open_stack(
    lab: Lab, link: Link, config: trio_netstack.StackConfig | None = None
) -> AbstractAsyncContextManager[trio_netstack.Stack]:
    return trio_netstack.open_stack(link, ip=f"{lab.stack_ip}/24", config=config)


# --- 2. bulk data both ways, every byte checked ---------------------------------------


@pytest.mark.parametrize("kind", ["tap", "veth"])
async def test_100mb_each_way_sha256(kind: str, request: pytest.FixtureRequest) -> None:
    lab: Lab = request.getfixturevalue(f"{kind}_lab")
    link = await lab.open_stack_link()
    async with open_stack(lab, link) as stack:
        # Stack -> kernel.
        sink = Peer(lab, TCP_PEER, "listen", "5001", "recv", "close")
        await sink.expect("listening")
        with trio.fail_after(120):
            stream = await trio_netstack.connect_tcp(lab.kernel_ip, 5001)
            start = time.monotonic()
            await sink.expect("connected")
            sent = await send_payload(stream, BULK, seed=1)
            await stream.send_eof()
            _, n, got = await sink.expect("received", timeout=120)
            elapsed = time.monotonic() - start
            assert await stream.receive_some() == b""  # the kernel closed after reading
            out_stats = stream.statistics()
            await stream.aclose()
        assert (int(n), got) == (BULK, sent)
        assert sent == digest(BULK, 1)
        assert out_stats.bytes_acked == BULK
        print(
            f"\n[{kind}] stack -> kernel: {BULK / MB:.0f} MB in {elapsed:.2f} s = "
            f"{BULK / MB / elapsed:.1f} MB/s (retransmitted {out_stats.retransmitted_segments}"
            f" segments, {out_stats.fast_retransmits} fast retransmits, "
            f"{out_stats.timeouts} timeouts)"
        )
        assert await sink.finish() == 0

        # Kernel -> stack.
        [listener] = await trio_netstack.open_tcp_listeners(5002)
        source = Peer(lab, TCP_PEER, "connect", lab.stack_ip, "5002", f"send:{BULK}:2", "shut")
        with trio.fail_after(120):
            stream = await listener.accept()
            start = time.monotonic()
            n_in, got_in = await receive_all(stream)
            elapsed = time.monotonic() - start
            await source.expect("connected")
            _, n, sent_in = await source.expect("sent")
            await source.expect("shut")
            in_stats = stream.statistics()
            ooo = in_stats.counters.get("out_of_order_segments", 0)
            await stream.aclose()
        await listener.aclose()
        assert (n_in, got_in) == (BULK, sent_in) and int(n) == BULK
        assert got_in == digest(BULK, 2)
        link_stats = stack.statistics().link
        unseen = await frames_towards_stack(lab) - link_stats["rx_frames"]
        print(
            f"[{kind}] kernel -> stack: {BULK / MB:.0f} MB in {elapsed:.2f} s = "
            f"{BULK / MB / elapsed:.1f} MB/s (kernel retransmitted "
            f"{await kernel_retransmits(lab)} segments in all; the stack saw {ooo} "
            f"out-of-order segments; of the frames the kernel's device passed towards the "
            f"stack, {unseen} never reached it, {link_stats['rx_dropped']} counted as link "
            f"drops; {tcp_counters(stack)['connection_queue_full']} segment batches overflowed)"
        )
        assert await source.finish() == 0


async def test_a_full_device_holds_the_stack_back_and_nothing_is_lost(veth_lab: Lab) -> None:
    # A 20 Mbit/s token bucket on the stack's side of the veth and a small socket send
    # buffer: the AF_PACKET socket fills and answers EAGAIN, so the stack's frames wait
    # in its ethernet task (Link.send_batch) and later ones queue behind them in order.
    veth_lab.run(
        "tc", "qdisc", "add", "dev", veth_lab.stack_device, "root",
        "tbf", "rate", "20mbit", "burst", "16kb", "latency", "500ms",
    )  # fmt: skip
    link = await veth_lab.open_stack_link()
    assert isinstance(link, PacketLink)
    link._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    size = 2 * MB
    async with open_stack(veth_lab, link) as stack:
        sink = Peer(veth_lab, TCP_PEER, "listen", "5001", "recv", "close")
        await sink.expect("listening")
        with trio.fail_after(60):
            stream = await trio_netstack.connect_tcp(veth_lab.kernel_ip, 5001)
            await sink.expect("connected")
            sent = await send_payload(stream, size, seed=3)
            await stream.send_eof()
            _, n, got = await sink.expect("received", timeout=60)
            assert await stream.receive_some() == b""
            stats = stream.statistics()
            await stream.aclose()
        assert (int(n), got) == (size, sent) and sent == digest(size, 3)
        counts = stack.statistics()
        runtime = counts.runtime
        assert runtime.get("tx_device_busy", 0) > 0, runtime  # the device did refuse frames
        assert runtime.get("tx_queue_full", 0) == 0, runtime  # none was thrown away for it
        # Every frame the stack built reached the device: IPv4 datagrams and ARP frames
        # made == frames the socket took, none refused.
        built = counts.ipv4.get("tx_packets", 0) + counts.arp.get("tx_frames", 0)
        assert (counts.link["tx_frames"], counts.link["tx_dropped"]) == (built, 0), counts
        # The qdisc never overflowed: the wait happened in the stack, not on the wire.
        qdisc = veth_lab.run("tc", "-s", "qdisc", "show", "dev", veth_lab.stack_device)
        assert re.search(rb"dropped 0\b", qdisc.stdout), qdisc.stdout
        assert await sink.finish() == 0
        # So nothing needed resending. Some retransmissions may still go out, and how many
        # is timing: the queue behind the 20 Mbit/s bucket grows the RTT faster than the
        # SRTT follows, so a tail loss probe (or, after a long stall, a timeout) can fire.
        # What does not depend on timing is that each of them was a duplicate, and the
        # kernel says so: it answers every segment it already holds with a D-SACK (RFC
        # 2883; SACK is on, and tcp_dsack by default). A retransmission that repaired a
        # real loss anywhere on the way would not be a duplicate (and wrong bytes in what
        # arrived first fail the digest above). Each retransmission reached the kernel
        # before our last ACK (one FIFO path), so while its socket still existed to count it.
        assert stats.sack, stats
        dsacks_sent = await kernel_counter(veth_lab, "TcpExtTCPDSACKOldSent")
        print(
            f"\n[tbf] {stats.retransmitted_segments} retransmitted ({stats.tlp_probes} probes,"
            f" {stats.timeouts} timeouts), {dsacks_sent} D-SACKed by the kernel"
        )
        assert dsacks_sent == stats.retransmitted_segments, stats


# --- 3. SYN options and window scaling, seen on the wire ------------------------------


TSHARK_FIELDS = (
    "ip.src",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.options.mss_val",
    "tcp.options.wscale.shift",
    "tcp.option_kind",
    "tcp.options.timestamp.tsval",
    "tcp.window_size_value",
    "tcp.window_size",
    "tcp.len",
)


def tshark_rows(pcap: Path) -> list[dict[str, str]]:
    argv = ["tshark", "-r", str(pcap), "-n", "-Y", "tcp", "-T", "fields", "-E", "separator=\t"]
    for field in TSHARK_FIELDS:
        argv += ["-e", field]
    done = subprocess.run(argv, capture_output=True, timeout=60, check=True)
    return [
        dict(zip(TSHARK_FIELDS, line.split("\t"), strict=True))
        for line in done.stdout.decode().splitlines()
    ]


async def start_tcpdump(lab: Lab, pcap: Path) -> subprocess.Popen[bytes]:
    proc = lab.popen(
        "tcpdump", "-i", lab.kernel_device, "-n", "-U", "-Z", "root", "-w", str(pcap), "tcp",
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


def stop_tcpdump(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    return err.decode(errors="replace")


@pytest.mark.system("tcpdump", "tshark")
async def test_syn_options_and_scaled_windows_on_the_wire(tap_lab: Lab, tmp_path: Path) -> None:
    lab = tap_lab
    pcap = tmp_path / "handshakes.pcap"
    size = 3 * MB
    link = await lab.open_stack_link()
    async with open_stack(lab, link):
        tcpdump = await start_tcpdump(lab, pcap)
        try:
            # Active open by the stack, then data to the kernel.
            sink = Peer(lab, TCP_PEER, "listen", "5001", "recv", "close")
            await sink.expect("listening")
            with trio.fail_after(60):
                active = await trio_netstack.connect_tcp(lab.kernel_ip, 5001)
                active_port = active.getsockname()[1]
                await sink.expect("connected")
                await send_payload(active, size, seed=3)
                await active.send_eof()
                await sink.expect("received")
                assert await active.receive_some() == b""
                active_stats = active.statistics()
                await active.aclose()
            # Passive open by the stack, data from the kernel.
            [listener] = await trio_netstack.open_tcp_listeners(5002)
            source = Peer(
                lab, TCP_PEER, "connect", lab.stack_ip, "5002", f"send:{size}:4", "shut", "recv"
            )
            with trio.fail_after(60):
                passive = await listener.accept()
                n, _ = await receive_all(passive)
                passive_stats = passive.statistics()
                await passive.aclose()
                await source.expect("connected")
                await source.expect("sent")
            assert n == size
            await listener.aclose()
            assert await sink.finish() == 0 and await source.finish() == 0
        finally:
            err = stop_tcpdump(tcpdump)
    print(f"\ntcpdump: {' '.join(err.split())}")

    rows = tshark_rows(pcap)
    stack_ip = lab.stack_ip
    syn = [r for r in rows if r["ip.src"] == stack_ip and r["tcp.flags"] == "0x0002"]
    synack = [r for r in rows if r["ip.src"] == stack_ip and r["tcp.flags"] == "0x0012"]
    assert {r["tcp.srcport"] for r in syn} == {str(active_port)}, syn
    assert {r["tcp.srcport"] for r in synack} == {"5002"}, synack
    for seg in syn + synack:
        kinds = seg["tcp.option_kind"].split(",")
        assert seg["tcp.options.mss_val"] == "1460", seg
        assert int(seg["tcp.options.wscale.shift"]) >= 7, seg  # a 4 MiB buffer needs 7
        assert "4" in kinds, ("no SACK-permitted option", seg)
        assert "8" in kinds and int(seg["tcp.options.timestamp.tsval"]) > 0, seg

    # The stack's windows as advertised after the handshake: scaled, beyond 65535.
    for port, stats in ((str(active_port), active_stats), ("5002", passive_stats)):
        later = [
            r
            for r in rows
            if r["ip.src"] == stack_ip and r["tcp.srcport"] == port and r["tcp.flags"] == "0x0010"
        ]
        assert later, port
        windows = [int(r["tcp.window_size"]) for r in later]
        fields = [int(r["tcp.window_size_value"]) for r in later]
        assert max(fields) <= 0xFFFF
        assert max(windows) > 0xFFFF, (port, max(windows))
        ours, theirs = stats.window_scale
        assert ours >= 7 and theirs > 0, stats
        assert stats.rcv_wnd > 0xFFFF, stats
        print(
            f"\nstack port {port}: window scale ours={ours} theirs={theirs}, rcv_wnd "
            f"{stats.rcv_wnd}, largest window on the wire {max(windows)}, "
            f"kernel's window {stats.snd_wnd}"
        )
    # The kernel's scaled window as the stack used it on the connection that sent data.
    assert active_stats.snd_wnd > 0xFFFF, active_stats


# --- 4. zero windows ------------------------------------------------------------------


async def test_zero_window_kernel_reader_pauses(tap_lab: Lab) -> None:
    lab = tap_lab
    size = 2 * MB
    link = await lab.open_stack_link()
    async with open_stack(lab, link):
        reader = Peer(lab, TCP_PEER, "listen", "5001", "rcvbuf=4096", "wait", "recv")
        await reader.expect("listening")
        with trio.fail_after(60):
            stream = await trio_netstack.connect_tcp(lab.kernel_ip, 5001)
            await reader.expect("connected")
            await reader.expect("waiting")
            # The whole payload fits the stack's 4 MiB send buffer: send_all returns.
            sent = await send_payload(stream, size, seed=5)
            await stream.send_eof()
            await wait_until(
                lambda: stream.statistics().zero_window_probes >= 2,
                "the stack to probe the kernel's zero window",
            )
            paused = stream.statistics()
            assert paused.snd_wnd == 0 and paused.send_buffered > 0, paused
            await reader.tell()
            _, n, got = await reader.expect("received")
            assert await stream.receive_some() == b""
            stats = stream.statistics()
            await stream.aclose()
        assert (int(n), got) == (size, sent) and sent == digest(size, 5)
        assert stats.bytes_acked == size and stats.send_buffered == 0
        assert stats.zero_window_probes >= 2
        print(f"\nzero-window probes sent: {stats.zero_window_probes}")
        assert await reader.finish() == 0


def kernel_probe_backoff(lab: Lab, port: int) -> int:
    """``ss -ti``'s backoff for the kernel's socket to ``port``: its zero-window probes."""
    out = lab.run("ss", "-Hnti", "state", "established", f"dport = :{port}", check=False)
    found = re.search(r"\bbackoff:(\d+)", out.stdout.decode())
    return int(found.group(1)) if found else 0


async def test_zero_window_stack_reader_pauses(tap_lab: Lab) -> None:
    lab = tap_lab
    size = 4 * MB
    buffer = 16384
    link = await lab.open_stack_link()
    async with open_stack(lab, link):
        [listener] = await trio_netstack.open_tcp_listeners(5002, receive_buffer=buffer)
        writer = Peer(
            lab, TCP_PEER, "connect", lab.stack_ip, "5002", "sndbuf=65536", f"send:{size}:6", "shut"
        )
        with trio.fail_after(60):
            stream = await listener.accept()
            await writer.expect("connected")
            # The application reads nothing: the stack's buffer fills, its window closes,
            # and the kernel sees the zero window and blocks its sender.
            await wait_until(
                lambda: stream.statistics().receive_buffered >= buffer,
                "the stack's receive buffer to fill",
            )
            assert stream.statistics().rcv_wnd == 0, stream.statistics()
            await wait_until(
                lambda: kernel_probe_backoff(lab, 5002) >= 1,
                "the kernel to probe the stack's zero window",
            )
            assert writer.proc.poll() is None  # still blocked in sendall
            paused = stream.statistics()
            n, got = await receive_all(stream)
            _, n_sent, sent = await writer.expect("sent")
            await writer.expect("shut")
            stats = stream.statistics()
            await stream.aclose()
        await listener.aclose()
        assert (n, got) == (size, sent) and int(n_sent) == size and got == digest(size, 6)
        assert paused.receive_buffered == buffer
        assert stats.receive_buffered == 0
        print(f"\nstack receiver counters: {stats.counters}")
        assert await writer.finish() == 0


# --- 5. refused connections -------------------------------------------------------------


async def test_connection_refused_both_ways(tap_lab: Lab) -> None:
    lab = tap_lab
    link = await lab.open_stack_link()
    async with open_stack(lab, link) as stack:
        with trio.fail_after(10), pytest.raises(ConnectionRefusedError):
            await trio_netstack.connect_tcp(lab.kernel_ip, 9)
        peer = Peer(lab, TCP_CONNREFUSED, lab.stack_ip, "9999")
        assert await peer.line() == ["ECONNREFUSED"]
        assert await peer.finish() == 0
        tcp = tcp_counters(stack)
        assert tcp["rst_sent"] == 1 and tcp["no_socket"] == 1, tcp
        assert tcp["connections"] == 0 and tcp["tasks"] == 0, tcp


# --- 6. simultaneous close and half-close ------------------------------------------------


def nft_dropped(lab: Lab) -> int:
    out = lab.run("nft", "list", "chain", "inet", "tnstest", "input").stdout.decode()
    found = re.search(r"counter packets (\d+)", out)
    assert found, out
    return int(found.group(1))


@pytest.mark.system("nft")
async def test_simultaneous_close(tap_lab: Lab) -> None:
    """Both sides close before either has seen the other's FIN; both then read to EOF.

    An nftables rule in the lab makes the timing certain: it holds back the stack's
    FIN (the stack retransmits it) until the kernel has sent its own FIN, so the stack
    receives a FIN in FIN_WAIT_1 and goes through CLOSING (RFC 9293 figure 13).
    """
    lab = tap_lab
    size = 20_000  # fits the kernel's receive window: it reads only after its FIN
    link = await lab.open_stack_link()
    async with open_stack(lab, link) as stack:
        peer = Peer(
            lab, TCP_PEER, "listen", "5001", f"send:{size}:8", "wait", "shut", "recv", "close"
        )
        await peer.expect("listening")
        with trio.fail_after(60):
            stream = await trio_netstack.connect_tcp(lab.kernel_ip, 5001)
            await peer.expect("connected")
            await peer.expect("sent")
            await peer.expect("waiting")
            sent = await send_payload(stream, size, seed=7)
            # Wait until every byte is acknowledged so that only the FIN is held back.
            await wait_until(lambda: stream.statistics().send_buffered == 0, "our data acked")
            await in_lab(lab, "nft", "add", "table", "inet", "tnstest")
            await in_lab(
                lab, "nft", "add", "chain", "inet", "tnstest", "input",
                "{ type filter hook input priority 0; }",
            )  # fmt: skip
            await in_lab(
                lab, "nft", "add", "rule", "inet", "tnstest", "input",
                "ip", "saddr", lab.stack_ip, "tcp", "flags", "&", "fin", "==", "fin",
                "counter", "drop",
            )  # fmt: skip
            await stream.send_eof()
            await wait_until(lambda: nft_dropped(lab) >= 1, "the stack's FIN to be held back")
            await peer.tell()  # the kernel shuts down its side, not having seen our FIN
            await peer.expect("shut")
            n, got = await receive_all(stream)  # the kernel's data, then its FIN
            assert (n, got) == (size, digest(size, 8))
            await wait_until(lambda: stream.statistics().state == "CLOSING", "CLOSING")
            await in_lab(lab, "nft", "delete", "table", "inet", "tnstest")
            _, n_k, got_k = await peer.expect("received")  # after our retransmitted FIN
            await peer.expect("closed")
            await wait_until(lambda: stream.statistics().state == "TIME_WAIT", "TIME_WAIT")
            stats = stream.statistics()
            await stream.aclose()
        assert (int(n_k), got_k) == (size, sent)
        assert stats.counters.get("fin_received") == 1 and stats.timeouts >= 1, stats
        tcp = tcp_counters(stack)
        assert tcp["rst_sent"] == 0 and tcp["time_wait"] == 1, tcp
        assert await peer.finish() == 0


async def test_both_close_at_once_with_data_in_flight(tap_lab: Lab) -> None:
    """Both sides send, then close without waiting for each other, then read to EOF."""
    lab = tap_lab
    size = 1 * MB
    link = await lab.open_stack_link()
    async with open_stack(lab, link) as stack:
        peer = Peer(lab, TCP_PEER, "listen", "5001", "wait", f"send:{size}:13", "shut", "recv")
        await peer.expect("listening")
        with trio.fail_after(60):
            stream = await trio_netstack.connect_tcp(lab.kernel_ip, 5001)
            await peer.expect("connected")
            await peer.expect("waiting")
            await peer.tell(confirmed=False)
            sent = await send_payload(stream, size, seed=14)
            await stream.send_eof()
            n, got = await receive_all(stream)
            assert await peer.line() == ["go"]
            _, n_sent, sent_k = await peer.expect("sent")
            await peer.expect("shut")
            _, n_k, got_k = await peer.expect("received")
            await stream.aclose()
            # Which FIN came first decides between TIME_WAIT and LAST_ACK -> CLOSED.
            await wait_until(
                lambda: tcp_counters(stack)["connections"] == 0, "the connection to end"
            )
        assert (n, got) == (size, sent_k) and int(n_sent) == size and got == digest(size, 13)
        assert (int(n_k), got_k) == (size, sent)
        tcp = tcp_counters(stack)
        assert tcp["rst_sent"] == 0 and tcp["tasks"] == 0 and tcp["time_wait"] <= 1, tcp
        assert await peer.finish() == 0


async def test_half_close_stack_sends_eof_first(tap_lab: Lab) -> None:
    lab = tap_lab
    up, down = 300_000, 2 * MB
    link = await lab.open_stack_link()
    async with open_stack(lab, link):
        peer = Peer(lab, TCP_PEER, "listen", "5001", "recv", "wait", f"send:{down}:10", "close")
        await peer.expect("listening")
        with trio.fail_after(60):
            stream = await trio_netstack.connect_tcp(lab.kernel_ip, 5001)
            await peer.expect("connected")
            sent = await send_payload(stream, up, seed=9)
            await stream.send_eof()
            _, n_k, got_k = await peer.expect("received")  # our FIN reached the kernel
            await peer.expect("waiting")
            # The kernel has acknowledged our FIN and sent nothing since.
            await wait_until(lambda: stream.statistics().state == "FIN_WAIT_2", "FIN_WAIT_2")
            await peer.tell()
            n, got = await receive_all(stream)  # the kernel still sends to us
            await peer.expect("sent")
            await peer.expect("closed")
            stats = stream.statistics()
            await stream.aclose()
        assert (int(n_k), got_k) == (up, sent)
        assert (n, got) == (down, digest(down, 10))
        assert stats.state == "TIME_WAIT", stats
        assert await peer.finish() == 0


async def test_half_close_kernel_sends_eof_first(tap_lab: Lab) -> None:
    lab = tap_lab
    up, down = 300_000, 2 * MB
    link = await lab.open_stack_link()
    async with open_stack(lab, link) as stack:
        [listener] = await trio_netstack.open_tcp_listeners(5002)
        peer = Peer(lab, TCP_PEER, "connect", lab.stack_ip, "5002", f"send:{up}:11", "shut", "recv")
        with trio.fail_after(60):
            stream = await listener.accept()
            n, got = await receive_all(stream)  # to the kernel's FIN
            await peer.expect("connected")
            await peer.expect("sent")
            await peer.expect("shut")
            assert stream.statistics().state == "CLOSE_WAIT"
            sent = await send_payload(stream, down, seed=12)  # the kernel still reads
            await stream.aclose()
            _, n_k, got_k = await peer.expect("received")
        await listener.aclose()
        assert (n, got) == (up, digest(up, 11))
        assert (int(n_k), got_k) == (down, sent)
        assert await peer.finish() == 0
        await wait_until(lambda: tcp_counters(stack)["connections"] == 0, "the connection to close")
        tcp = tcp_counters(stack)
        assert tcp["rst_sent"] == 0 and tcp["time_wait"] == 0 and tcp["tasks"] == 0, tcp


# --- 7. many sequential connections ------------------------------------------------------


async def close_first_echo(stream: trio_netstack.TcpStream) -> None:
    """Echo one 11-byte message, then close first (the stack takes TIME_WAIT)."""
    async with stream:
        got = b""
        while len(got) < 11:
            data = await stream.receive_some()
            if not data:
                break
            got += data
        await stream.send_all(got)
        await stream.send_eof()
        assert await stream.receive_some() == b""


async def stack_clients(lab: Lab, first: int, count: int) -> None:
    for i in range(first, first + count):
        msg = b"conn %06d" % i
        async with trio_netstack.open_tcp_stream(lab.kernel_ip, 5003) as stream:
            await stream.send_all(msg)
            got = b""
            while len(got) < len(msg):
                data = await stream.receive_some()
                assert data, i
                got += data
            assert got == msg
            await stream.send_eof()
            assert await stream.receive_some() == b""


# Allocations that are not the stack's: trio keeps cancel scopes whose deadline was
# dropped in its deadline heap until they expire or the heap outgrows twice the live
# deadlines plus 1000 (a bounded, lazy cleanup); the lab keeps every Popen it started;
# tracemalloc and fnmatch keep the first snapshot and its compiled filters.
NOT_THE_STACK = tuple(
    tracemalloc.Filter(False, pattern)
    for pattern in (
        "*/trio/_timeouts.py",
        "*/trio/_core/_run.py",
        "*/subprocess.py",
        "*/trio_netstack/testing/lab.py",
        "*/tracemalloc.py",
        "*/fnmatch.py",
        "*/re/_*.py",
        "<frozen abc>",
    )
)


def memory_snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(NOT_THE_STACK)


def census() -> Counter[str]:
    """Live objects of trio's and the stack's classes, by class."""
    gc.collect()
    return Counter(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in map(type, gc.get_objects())
        if cls.__module__.startswith("trio")
    )


async def test_thousand_sequential_connections(tap_lab: Lab) -> None:
    lab = tap_lab
    config = trio_netstack.StackConfig(tcp_demux=DemuxConfig(max_time_wait=100))
    # Connections per direction: a warm-up fills the TIME_WAIT table to its bound,
    # then two measured rounds; 500 + 500 connections in all.
    rounds = [(0, 50), (50, 150), (200, 300)]
    link = await lab.open_stack_link()
    async with open_stack(lab, link, config=config) as stack, trio.open_nursery() as nursery:
        await nursery.start(trio_netstack.serve_tcp, close_first_echo, 8888)

        def idle() -> bool:
            tcp = tcp_counters(stack)
            return tcp["connections"] == 0 and tcp["tasks"] == 0

        async def round_trip(first: int, count: int) -> None:
            # The kernel connects to the stack `count` times...
            client = Peer(lab, TCP_MANY_CLIENT, lab.stack_ip, "8888", str(count))
            assert await client.line(timeout=120) == ["ok", str(count)]
            assert await client.finish() == 0
            # ... and the stack to the kernel.
            server = Peer(lab, TCP_MANY_SERVER, "5003", str(count))
            await server.expect("listening")
            with trio.fail_after(120):
                await stack_clients(lab, first, count)
            assert await server.line(timeout=30) == ["ok", str(count)]
            assert await server.finish() == 0
            await wait_until(idle, "every connection task to end")
            assert tcp_counters(stack)["time_wait"] <= 100

        start = time.monotonic()
        await round_trip(*rounds[0])
        objects_before = census()
        tracemalloc.start()
        try:
            await round_trip(*rounds[1])
            first = memory_snapshot()
            await round_trip(*rounds[2])
            second = memory_snapshot()
        finally:
            tracemalloc.stop()
        objects_after = census()
        elapsed = time.monotonic() - start
        growth = second.compare_to(first, "lineno")
        grown = sum(stat.size_diff for stat in growth)
        more_objects = {
            name: objects_after[name] - objects_before[name]
            for name in objects_after
            if objects_after[name] != objects_before[name]
        }
        tcp = tcp_counters(stack)
        total = 2 * sum(count for _, count in rounds)
        measured = 2 * rounds[2][1]
        print(
            f"\n{total} connections in {elapsed:.1f} s; memory held grew by {grown} bytes "
            f"over the last {measured}; objects of trio's and the stack's classes that "
            f"changed in number over the last {total - 2 * rounds[0][1]}: {more_objects}; "
            f"time_wait {tcp['time_wait']}, evicted {tcp['time_wait_evicted']}"
        )
        assert tcp["syn_accepted"] == total // 2
        assert tcp["listen_overflow"] == 0 and tcp["rst_sent"] == 0, tcp
        assert tcp["tasks"] == 0 and tcp["connections"] == 0, tcp
        # Every connection closed first on the stack's side: 1000 TIME_WAITs, 100 kept.
        assert tcp["time_wait_entered"] == total, tcp
        assert tcp["time_wait"] == 100 and tcp["time_wait_evicted"] == total - 100, tcp
        # No connection, handle, stream, task, channel... left behind: a leak of one
        # object per connection would show as hundreds. trio's deadline heap keeps
        # stale CancelScopes for a while (bounded): those are not counted.
        more_objects.pop("trio.CancelScope", None)
        # Likewise the stack's alarm clock keeps closed mailboxes in its heap until their
        # stale alarms come due or the heap is rebuilt: at most 64 entries while few
        # alarms are live (AlarmClock.arm), so a bound, not one per connection.
        assert more_objects.pop("trio_netstack._runtime.channels.Mailbox", 0) <= 64
        assert all(n <= 5 for n in more_objects.values()), more_objects
        # And in bytes: 50 bytes left behind per connection would add 30 kB. What
        # varies between runs (the floats that stale trio deadlines hold) is below 10 kB.
        assert grown < 30_000, "\n".join(str(stat) for stat in growth[:15])
        nursery.cancel_scope.cancel()


# --- leaving the stack -----------------------------------------------------------------


async def test_leaving_the_stack_right_after_aclose_still_closes(tap_lab: Lab) -> None:
    """aclose() and then leaving open_stack at once: the kernel must not be left hanging.

    The kernel closes first; the stack's application reads to EOF, closes and its
    stack ends, as a program (``nc``) does when the peer has closed. Linux sends the FIN
    of a closed socket after its process has gone; the stack must at least send its
    FIN (or, failing that, a RST) before it stops.
    """
    lab = tap_lab
    peer = Peer(lab, TCP_PEER, "connect", lab.stack_ip, "5002", "send:1000:15", "shut", "recv")
    link = await lab.open_stack_link()
    async with open_stack(lab, link):
        [listener] = await trio_netstack.open_tcp_listeners(5002)
        with trio.fail_after(30):
            stream = await listener.accept()
            n, _ = await receive_all(stream)  # up to the kernel's FIN
            await stream.aclose()
            await listener.aclose()
    assert n == 1000
    await peer.expect("connected")
    await peer.expect("sent")
    await peer.expect("shut")
    # The kernel's recv() ends with our FIN ("received 0 ...") or a RST ("error ...").
    try:
        words = await peer.line(timeout=10)
    except trio.TooSlowError:
        states = await in_lab(lab, "ss", "-Htan", "dport = :5002")
        raise AssertionError(
            f"the stack stopped without FIN or RST; the kernel's socket: {states.strip()}"
        ) from None
    assert words[:2] == ["received", "0"] or words[:2] == ["error", "ECONNRESET"], words
