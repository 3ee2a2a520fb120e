"""TCP loss recovery between two stacks, under Trio's virtual clock.

Two stacks on an in-memory cable, each side's frames impaired as it sends them
(``ImpairedLink``, seeded: every run makes the same decisions). Between each stack
and its impairment sits :class:`Wire`, a small link wrapper of this module that

* cuts the cable on demand (everything, or only TCP frames: ``Cut``),
* optionally serialises frames at a fixed bit rate (a FIFO released by its ``run()``
  task, as a bottleneck link would), so that goodput means something,
* records the TCP header fields of what its stack sent (time, flags, seq, length),
  including what it dropped, so tests can check retransmission schedules and count
  RSTs on the wire.

Every transfer checks each byte (sha256 and length of both directions); every case
checks that the stacks had to recover (retransmissions, timeouts), and the counters
that explain how.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import itertools
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

import trio_netstack
from trio_netstack.link import ImpairedLink, Impairment
from trio_netstack.link.base import Link, RxFrame
from trio_netstack.link.memory import MemoryHub

MB = 1_000_000
SIZE = 10 * MB

A_IP, B_IP = "192.0.2.1", "192.0.2.2"
A_MAC, B_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


# --- the wire ---------------------------------------------------------------------------


def tcp_header(frame: bytes) -> tuple[int, int, int] | None:
    """(flags, seq, payload length) of an Ethernet II / IPv4 / TCP frame, else None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ihl = (frame[14] & 0x0F) * 4
    tcp = 14 + ihl
    if len(frame) < tcp + 20:
        return None
    total = int.from_bytes(frame[16:18], "big")
    offset = (frame[tcp + 12] >> 4) * 4
    return frame[tcp + 13], int.from_bytes(frame[tcp + 4 : tcp + 8], "big"), total - ihl - offset


@attrs.define
class Cut:
    """What the wires of a pair drop right now (shared by both sides)."""

    everything: bool = False
    tcp_only: bool = False


@attrs.frozen
class Seen:
    """One TCP segment a stack handed to its wire."""

    time: float
    flags: int
    seq: int
    length: int
    dropped: bool


class Wire(Link):
    """A stack's end of the cable: cuts, an optional rate limit, and a record of TCP sent.

    Only the sending direction is acted on; each side of a pair has its own wire, so a
    cut of both wires stops both directions.
    """

    def __init__(
        self,
        inner: Link,
        cut: Cut,
        *,
        rate: float | None = None,
        coalesce: float = 0.0005,
        record: bool = False,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.mtu = inner.mtu
        self.hw_address = inner.hw_address
        self.stats = inner.stats
        self.cut = cut
        self.rate = rate  # bits per second, or None for no limit
        # Frames that left the rate limiter are handed on in batches at most this far
        # apart (like a NIC's interrupt moderation): one wake-up per frame would cost
        # the receiving stack far more CPU for the same virtual-time result.
        self.coalesce = coalesce
        self.record = record
        self.seen: list[Seen] = []
        self.dropped = 0
        self.max_queued = 0
        self._queue: deque[tuple[float, bytes]] = deque()  # (leaves at, frame)
        self._busy_until = 0.0
        self._wakeup = trio.Event()

    async def receive_batch(self) -> list[RxFrame]:
        return await self.inner.receive_batch()

    async def send_batch(self, frames: Sequence[bytes | bytearray | memoryview]) -> None:
        now = trio.current_time()
        cut = self.cut
        keep: list[bytes] = []
        for frame in frames:
            data = bytes(frame)
            header = tcp_header(data) if (self.record or cut.tcp_only) else None
            drop = cut.everything or (cut.tcp_only and header is not None)
            if self.record and header is not None:
                self.seen.append(Seen(now, *header, drop))
            if drop:
                self.dropped += 1
            else:
                keep.append(data)
        if self.rate is None:
            if keep:
                await self.inner.send_batch(keep)
            else:
                await trio.lowlevel.checkpoint()
            return
        # Serialisation at `rate`: each frame leaves when the ones before it are out.
        for data in keep:
            self._busy_until = max(now, self._busy_until) + len(data) * 8 / self.rate
            self._queue.append((self._busy_until, data))
        self.max_queued = max(self.max_queued, len(self._queue))
        if keep:
            self._wakeup.set()
        await trio.lowlevel.checkpoint()

    def try_send(self, frames: Sequence[bytes | bytearray | memoryview]) -> int:
        # The stack's transmit fast path: frames the inner link takes (or the cut drops)
        # now are handled here, the rest goes through send_batch. Without a rate limit
        # over a plain memory link every send takes this path, as on a TAP.
        if self.rate is not None:
            return 0
        now = trio.current_time()
        cut = self.cut
        handled = 0
        for frame in frames:
            data = bytes(frame)
            header = tcp_header(data) if (self.record or cut.tcp_only) else None
            drop = cut.everything or (cut.tcp_only and header is not None)
            if not drop and self.inner.try_send([data]) == 0:
                break
            if self.record and header is not None:
                self.seen.append(Seen(now, *header, drop))
            if drop:
                self.dropped += 1
            handled += 1
        return handled

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.inner.run)
            task_status.started()
            if self.rate is None:
                return  # the nursery keeps waiting for inner.run()
            queue = self._queue
            while True:
                if not queue:
                    await self._wakeup.wait()
                    self._wakeup = trio.Event()
                    continue
                await trio.sleep_until(queue[0][0] + self.coalesce)
                now = trio.current_time()
                batch = []
                while queue and queue[0][0] <= now:
                    batch.append(queue.popleft()[1])
                await self.inner.send_batch(batch)

    async def aclose(self) -> None:
        self._queue.clear()
        await self.inner.aclose()

    def segments(self, predicate: Callable[[Seen], bool] = lambda s: True) -> list[Seen]:
        return [s for s in self.seen if predicate(s)]


@attrs.frozen
class Pair:
    a: trio_netstack.Stack
    b: trio_netstack.Stack
    wire_a: Wire
    wire_b: Wire
    cut: Cut
    hub: MemoryHub

    def impair_stats(self) -> dict[str, int]:
        """What the impairments did, both sides added up."""
        total: dict[str, int] = {}
        for wire in (self.wire_a, self.wire_b):
            if isinstance(wire.inner, ImpairedLink):
                for key, n in wire.inner.impair_stats.items():
                    total[key] = total.get(key, 0) + n
        return total


def make_wire(
    hub: MemoryHub,
    name: str,
    cut: Cut,
    impair: str | None,
    seed: int,
    *,
    rate: float | None,
    record: bool,
) -> Wire:
    """A port of ``hub``, impaired (what it sends) as ``impair`` says, behind a Wire."""
    inner: Link = hub.attach(name)
    if impair:
        inner = ImpairedLink(inner, Impairment.parse(f"{impair},seed={seed},direction=tx"))
    return Wire(inner, cut, rate=rate, record=record)


@asynccontextmanager
async def wired_pair(
    impair: str | None = None,
    *,
    seed: int = 1,
    rate: float | None = None,
    record: bool = False,
) -> AsyncIterator[Pair]:
    """Stacks A (192.0.2.1) and B (192.0.2.2), each behind its Wire on one cable."""
    hub = MemoryHub()
    cut = Cut()
    wire_a = make_wire(hub, "a", cut, impair, seed, rate=rate, record=record)
    wire_b = make_wire(hub, "b", cut, impair, seed + 1, rate=rate, record=record)
    async with (
        trio_netstack.open_stack(wire_a, ip=f"{A_IP}/24", mac=A_MAC, secret=seed) as a,
        trio_netstack.open_stack(wire_b, ip=f"{B_IP}/24", mac=B_MAC, secret=seed + 7) as b,
    ):
        yield Pair(a, b, wire_a, wire_b, cut, hub)


# --- bulk transfers ---------------------------------------------------------------------


@functools.cache
def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@attrs.frozen
class Transfer:
    client: trio_netstack.TcpStatistics  # A's stream
    server: trio_netstack.TcpStatistics  # B's stream
    seconds: float  # virtual time from the connection's establishment to both EOFs


async def transfer(
    pair: Pair,
    port: int,
    *,
    up: int = SIZE,
    down: int = SIZE,
    progress: Callable[[int], None] | None = None,
) -> Transfer:
    """Send ``up`` bytes A -> B and ``down`` bytes B -> A at once; check every byte.

    ``progress`` is called with the number of bytes B has received so far.
    """
    sent = {"a": payload(up, 1), "b": payload(down, 2)}
    got: dict[str, tuple[int, bytes]] = {}
    [listener] = await trio_netstack.open_tcp_listeners(port, stack=pair.b)

    async def send(stream: trio_netstack.TcpStream, data: bytes) -> None:
        view = memoryview(data)
        for i in range(0, len(data), 65536):
            await stream.send_all(view[i : i + 65536])
        await stream.send_eof()

    async def receive(stream: trio_netstack.TcpStream, name: str) -> None:
        h = hashlib.sha256()
        n = 0
        while data := await stream.receive_some():
            h.update(data)
            n += len(data)
            if progress is not None and name == "b":
                progress(n)
        got[name] = (n, h.digest())

    async def side(stream: trio_netstack.TcpStream, name: str, data: bytes) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, stream, data)
            nursery.start_soon(receive, stream, name)

    client = await trio_netstack.connect_tcp(B_IP, port, stack=pair.a)
    server = await listener.accept()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, client, "a", sent["a"])
        nursery.start_soon(side, server, "b", sent["b"])
    seconds = trio.current_time() - start
    result = Transfer(client.statistics(), server.statistics(), seconds)
    await client.aclose()
    await server.aclose()
    await listener.aclose()
    # No byte lost, duplicated or changed, in either direction.
    assert got["b"] == (up, hashlib.sha256(sent["a"]).digest()), (got["b"][0], up)
    assert got["a"] == (down, hashlib.sha256(sent["b"]).digest()), (got["a"][0], down)
    # The machines agree: each delivered exactly what the other sent, once.
    assert result.client.bytes_received == down and result.server.bytes_received == up, result
    return result


def describe(result: Transfer, pair: Pair) -> str:
    a, b = pair.a.statistics(), pair.b.statistics()
    lines = [
        f"{result.seconds:.2f} virtual s; impairments: {pair.impair_stats()}; link queue "
        f"drops A {a.link['rx_dropped']} B {b.link['rx_dropped']}; TCP queue drops "
        f"A {a.tcp.get('connection_queue_full', 0)} B {b.tcp.get('connection_queue_full', 0)}"
    ]
    for name, s in (("A", result.client), ("B", result.server)):
        lines.append(
            f"  {name}: retransmitted {s.retransmitted_segments} of {s.segments_sent} "
            f"segments, fast retransmits {s.fast_retransmits}, timeouts {s.timeouts}, "
            f"cwnd {s.cwnd}, srtt {s.srtt}, counters {s.counters}"
        )
    return "\n".join(lines)


# --- 1. every byte through loss, reordering, duplication, corruption, a blackout --------

#: The cable's rate in the bulk tests. Without one, the in-memory cable is infinitely
#: fast, a sender's bursts overflow the receiving port's queue (1024 frames), and the
#: stacks then recover from losses the test did not ask for.
GIGABIT = 1e9


@pytest.mark.parametrize(
    ("impair", "seed"),
    [
        ("loss=0.01", 11),
        ("loss=0.05", 12),
        ("loss=0.10", 13),
        # Reordering and duplication alone need no recovery (a good stack retransmits
        # nothing); with 1% loss as well, recovery must work through them.
        ("loss=0.01,reorder=0.05,delay=2ms", 14),
        ("loss=0.01,dup=0.05", 15),
    ],
)
async def test_every_byte_through_loss(
    autojump_clock: trio.abc.Clock, impair: str, seed: int
) -> None:
    async with wired_pair(impair, seed=seed, rate=GIGABIT) as pair:
        with trio.fail_after(600):
            result = await transfer(pair, 5001)
        report = describe(result, pair)
        print(f"\n[{impair}] {report}")
        done = pair.impair_stats()
        assert done["lost"] > 0, report
        if "reorder" in impair:
            assert done["reordered"] > 0, report
        if "dup" in impair:
            assert done["duplicated"] > 0, report
        # The only drops are the impairment's: the cable's queues never overflowed.
        for stack in (pair.a, pair.b):
            assert stack.statistics().link["rx_dropped"] == 0, report
        for s in (result.client, result.server):
            assert s.retransmitted_segments > 0, report
            assert s.fast_retransmits > 0, report  # SACK/dupack recovery, not only RTOs


async def test_corruption_is_dropped_by_checksums(autojump_clock: trio.abc.Clock) -> None:
    async with wired_pair("corrupt=0.01", seed=31, rate=GIGABIT) as pair:
        with trio.fail_after(600):
            result = await transfer(pair, 5003)
        report = describe(result, pair)
        for stack, name in ((pair.a, "A"), (pair.b, "B")):
            st = stack.statistics()
            report += f"\n  {name}: ipv4 {dict(st.ipv4)}; tcp {dict(st.tcp)}"
        print(f"\n[corrupt=0.01] {report}")
        for receiver, sender in ((pair.a, pair.wire_b), (pair.b, pair.wire_a)):
            assert isinstance(sender.inner, ImpairedLink)
            corrupted = sender.inner.impair_stats["corrupted"]
            st = receiver.statistics()
            bad = st.ipv4.get("ip_bad_checksum", 0) + st.tcp.get("tcp_bad_checksum", 0)
            # Each bad checksum is one of the peer's corrupted frames (a flip may also
            # be caught earlier, e.g. as a bad IP version, hence <=). Most flips land
            # in a TCP payload.
            assert corrupted > 0, report
            assert 0 < st.tcp.get("tcp_bad_checksum", 0) <= bad <= corrupted, report
        for s in (result.client, result.server):
            assert s.retransmitted_segments > 0, report


async def test_two_second_blackout_mid_transfer(autojump_clock: trio.abc.Clock) -> None:
    async with wired_pair("delay=1ms", seed=41, rate=GIGABIT) as pair:
        arrived = trio.Event()
        window: list[float] = []

        def progress(n: int) -> None:
            if n >= 3 * MB:
                arrived.set()

        async def blackout() -> None:
            await arrived.wait()
            pair.cut.everything = True
            window.append(trio.current_time())
            await trio.sleep(2.0)  # the blackout itself, in virtual time
            pair.cut.everything = False
            window.append(trio.current_time())

        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(blackout)
                result = await transfer(pair, 5004, progress=progress)
        report = describe(result, pair)
        print(f"\n[blackout {window}] {report}")
        assert len(window) == 2, "the blackout never ended: the transfer finished before it?"
        assert pair.wire_a.dropped > 0 and pair.wire_b.dropped > 0, report
        assert result.seconds > 2.0, report
        for s in (result.client, result.server):
            assert s.timeouts > 0, report
            assert s.retransmitted_segments > 0, report


# --- 2. goodput at 1% loss ----------------------------------------------------------------


async def test_goodput_at_one_percent_loss(autojump_clock: trio.abc.Clock) -> None:
    """10 MB one way over 100 Mbit/s with 5 ms each way (10 ms RTT), with and without loss.

    Prints the ratio of the goodputs. No threshold: the ratio is a measurement.
    """
    seconds: dict[str, float] = {}
    reports: list[str] = []
    for name, impair in (("clean", "delay=5ms"), ("lossy", "delay=5ms,loss=0.01")):
        async with wired_pair(impair, seed=51, rate=100e6) as pair:
            with trio.fail_after(600):
                result = await transfer(pair, 5005, up=SIZE, down=0)
            seconds[name] = result.seconds
            reports.append(
                f"{name}: {SIZE * 8 / result.seconds / 1e6:.1f} Mbit/s; {describe(result, pair)}; "
                f"most frames queued at A's wire {pair.wire_a.max_queued}"
            )
            if name == "clean":
                assert pair.impair_stats()["lost"] == 0
            else:
                assert result.client.retransmitted_segments > 0
    ratio = seconds["clean"] / seconds["lossy"]
    summary = f"goodput at 1% loss / loss-free = {ratio:.3f}\n" + "\n".join(reports)
    print("\n" + summary)
    assert ratio > 0, summary


# --- 3. a peer that vanishes ---------------------------------------------------------------


def rto_schedule(rto: float, count: int, maximum: float = 120.0) -> list[float]:
    """RFC 6298 5.5: the RTO doubles after each expiry, up to the maximum (Linux's 120 s)."""
    return [min(rto * 2**k, maximum) for k in range(count)]


async def vanished_peer(
    *, user_timeout: float | None, idle: float = 0.0, tcp_only: bool = False
) -> tuple[BaseException, float, list[float], float, trio_netstack.TcpStatistics]:
    """Connect A to B, exchange a little, idle, cut the cable for good, send 1000 bytes.

    ``tcp_only`` cuts only TCP (B's host still answers ARP: its TCP is what vanished).
    Returns A's error, the time from the first transmission of those bytes to the
    failure, the offsets of every transmission of them, the RTO before the cut and
    A's final statistics.
    """
    async with wired_pair(record=True, seed=61) as pair:
        [listener] = await trio_netstack.open_tcp_listeners(6001, stack=pair.b)
        stream = await trio_netstack.connect_tcp(
            B_IP, 6001, stack=pair.a, user_timeout=user_timeout
        )
        server = await listener.accept()
        # Some round trips first, so the RTO comes from samples, not the initial 1 s.
        for i in range(10):
            await stream.send_all(b"ping %d" % i)
            assert await server.receive_some() == b"ping %d" % i
            await server.send_all(b"pong")
            assert await stream.receive_some() == b"pong"
        await trio.sleep(idle)  # an idle connection (part of the scenario)
        rto = stream.statistics().rto
        if tcp_only:
            pair.cut.tcp_only = True
        else:
            pair.cut.everything = True
        start = trio.current_time()
        mark = len(pair.wire_a.seen)
        await stream.send_all(b"x" * 1000)  # into the void
        with trio.fail_after(3600), pytest.raises(trio.BrokenResourceError) as info:
            await stream.receive_some()
        elapsed = trio.current_time() - start
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"more")
        sends = [s.time - start for s in pair.wire_a.seen[mark:] if s.length > 0]
        stats = stream.statistics()
        await stream.aclose()
        return info.value, elapsed, sends, rto, stats


@pytest.mark.parametrize("cut", ["tcp", "everything"])
async def test_vanished_peer_default_retry_limit(autojump_clock: trio.abc.Clock, cut: str) -> None:
    """15 retransmissions (Linux's tcp_retries2), then failure: 924.6 s at a 200 ms RTO.

    The error is ETIMEDOUT when B's host still answers ARP. When everything is cut,
    A's ARP entry for B fails meanwhile and the stream reports EHOSTUNREACH instead,
    as Linux does (the neighbour failure reaches the socket as a soft error, which
    tcp_write_err reports in place of ETIMEDOUT).
    """
    error, elapsed, sends, rto, stats = await vanished_peer(
        user_timeout=None, tcp_only=cut == "tcp"
    )
    retries = trio_netstack.TcpConfig().max_retransmits
    # Waits: after the first transmission and after each of the `retries` retransmissions.
    waits = rto_schedule(rto, retries + 1)
    expected = sum(waits)
    report = (
        f"failed after {elapsed:.3f} s (expected {expected:.3f} s from RTO {rto:.3f} s); "
        f"transmissions at {[round(t, 3) for t in sends]}; {stats}"
    )
    print("\n" + report)
    cause = error.__cause__
    if cut == "tcp":
        assert isinstance(cause, TimeoutError), (repr(cause), report)
    else:
        assert isinstance(cause, OSError) and cause.errno == errno.EHOSTUNREACH, (
            repr(cause),
            report,
        )
    assert stats.state == "CLOSED", report
    assert rto == pytest.approx(0.2, abs=0.05), report  # a LAN's RTT: the 200 ms floor
    # Each retransmission and the failure follow the doubling RTOs exactly (virtual
    # time: no scheduling noise). Only before the first RTO may a tail-loss probe
    # (RFC 8985 7) have gone out, which re-arms the RTO; so the total may exceed the
    # sum by at most the probe's timeout, less than one initial RTO.
    if cut == "tcp":
        assert len(sends) >= retries + 1, report
        tail = [*sends[-retries:], elapsed]
        gaps = [b - a for a, b in itertools.pairwise(tail)]
        assert gaps == pytest.approx(waits[1:], abs=1e-3), (gaps, report)
    # (With everything cut, the later retransmissions die in A's ARP layer, unresolved,
    # and never reach the wire: the timing shows in the counters and the failure time.)
    assert expected - 1e-3 <= elapsed <= expected + rto + 1e-3, report
    assert stats.timeouts == retries + 1, report


async def test_vanished_peer_user_timeout(autojump_clock: trio.abc.Clock) -> None:
    """RFC 5482 / RFC 9293 3.10.8: with a 10 s user timeout the stream fails at 10 s.

    Linux clamps the RTO to what is left of the user timeout
    (tcp_clamp_rto_to_user_timeout), so it fails at the limit and not at the next
    backed-off expiry after it (which would be 12.6 s here).
    """
    error, elapsed, sends, _, stats = await vanished_peer(user_timeout=10)
    report = f"failed after {elapsed:.3f} s; transmissions at {[round(t, 3) for t in sends]}"
    print("\n" + report)
    assert isinstance(error.__cause__, TimeoutError), (repr(error.__cause__), report)
    assert stats.state == "CLOSED", report
    assert len(sends) >= 5, report  # it retried meanwhile
    assert elapsed >= 10.0, report  # never before the limit
    assert elapsed <= 10.0 + 0.2, report  # nor much after it (one minimum RTO of slack)


async def test_user_timeout_counts_unacknowledged_time_only(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Idle time before the data was sent does not count towards the user timeout.

    RFC 5482 3: the user timeout is how long transmitted data may remain
    unacknowledged. A connection idle for 30 s that then loses its peer must still
    retry for 10 s.
    """
    error, elapsed, sends, _, _ = await vanished_peer(user_timeout=10, idle=30)
    report = f"failed after {elapsed:.3f} s; transmissions at {[round(t, 3) for t in sends]}"
    print("\n" + report)
    assert isinstance(error.__cause__, TimeoutError), (repr(error.__cause__), report)
    assert elapsed >= 10.0, report


# --- 4. SYN retransmissions -----------------------------------------------------------------


async def test_syn_retransmission_schedule(autojump_clock: trio.abc.Clock) -> None:
    """Six SYN retries 1, 2, 4 ... 32 s apart, failure 64 s after the last: 127 s (Linux)."""
    async with wired_pair(record=True, seed=71) as pair:
        pair.cut.tcp_only = True  # ARP still works: the peer is there, its TCP is not
        with trio.fail_after(600), pytest.raises(TimeoutError):
            await trio_netstack.connect_tcp(B_IP, 80, stack=pair.a)
        end = trio.current_time()
        syns = [s.time for s in pair.wire_a.seen if s.flags & (SYN | ACK) == SYN]
        offsets = [t - syns[0] for t in syns]
        report = f"SYNs at {offsets}, failure at {end - syns[0]}"
        print("\n" + report)
        assert all(s.dropped for s in pair.wire_a.seen), report
        assert offsets == pytest.approx([0, 1, 3, 7, 15, 31, 63], abs=1e-6), report
        assert end - syns[0] == pytest.approx(127, abs=1e-6), report
        assert len(pair.wire_a.seen) == 7, report  # nothing but the SYNs
        tcp = pair.b.statistics().tcp
        assert tcp.get("syn_accepted", 0) == 0 and tcp.get("rst_sent", 0) == 0, dict(tcp)
        assert pair.a.statistics().tcp["connections"] == 0


# --- 5. no RST loop ---------------------------------------------------------------------------


def rsts(wire: Wire, since: float) -> list[Seen]:
    return [s for s in wire.seen if s.flags & RST and s.time >= since]


async def test_no_rst_loop_when_the_peer_restarts(autojump_clock: trio.abc.Clock) -> None:
    """B crashes and comes back (same addresses) while A keeps sending on its connection.

    B's new stack knows nothing of the connection and answers with RST; A must take
    it and stop, and neither side may answer a RST with a RST.
    """
    hub = MemoryHub()
    cut = Cut()
    wire_a = Wire(hub.attach("a"), cut, record=True)
    wire_b = Wire(hub.attach("b"), cut, record=True)
    async with trio_netstack.open_stack(wire_a, ip=f"{A_IP}/24", mac=A_MAC, secret=81) as a:
        async with trio_netstack.open_stack(wire_b, ip=f"{B_IP}/24", mac=B_MAC, secret=82) as b:
            [listener] = await trio_netstack.open_tcp_listeners(6002, stack=b)
            stream = await trio_netstack.connect_tcp(B_IP, 6002, stack=a)
            server = await listener.accept()
            await stream.send_all(b"hello")
            assert await server.receive_some() == b"hello"
            # The crash: B vanishes without a word (its FIN on the way out is cut).
            cut.everything = True
        # B comes back on the same cable, on a port attached only now (the hub copies
        # every frame to every port: one attached earlier would hold the whole
        # conversation, which a rebooted host never received).
        wire_b2 = Wire(hub.attach("b-rebooted"), cut, record=True)
        async with trio_netstack.open_stack(wire_b2, ip=f"{B_IP}/24", mac=B_MAC, secret=83) as b2:
            cut.everything = False
            start = trio.current_time()
            failure: list[BaseException] = []

            async def keep_sending() -> None:
                # A message every 100 ms, as an application would, until the stream fails.
                for i in range(100):
                    try:
                        await stream.send_all(b"message %d\n" % i)
                    except trio.BrokenResourceError as exc:
                        failure.append(exc)
                        return
                    await trio.sleep(0.1)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_sending)
                await trio.sleep(10)  # the observation window, virtual time
            from_a, from_b = rsts(wire_a, start), rsts(wire_b2, start)
            sent_by_a = [
                (round(s.time - start, 3), hex(s.flags), s.length)
                for s in wire_a.seen
                if s.time >= start
            ]
            report = (
                f"A sent {sent_by_a}; "
                f"RSTs from A {[round(s.time - start, 3) for s in from_a]}, from the new B "
                f"{[round(s.time - start, 3) for s in from_b]}; A tcp {dict(a.statistics().tcp)}"
                f"; new B tcp {dict(b2.statistics().tcp)}"
            )
            print("\n" + report)
            assert failure and isinstance(failure[0].__cause__, ConnectionResetError), report
            assert 1 <= len(from_b) <= 3 and len(from_a) == 0, report
            assert stream.statistics().state == "CLOSED", report
            assert a.statistics().tcp["connections"] == 0, report
            assert b2.statistics().tcp["connections"] == 0, report
            await stream.aclose()


async def test_no_rst_loop_after_an_abort(autojump_clock: trio.abc.Clock) -> None:
    """A closes with unread data (an abort: RST, RFC 2525 2.17) while B keeps sending."""
    async with wired_pair(record=True, seed=91) as pair:
        [listener] = await trio_netstack.open_tcp_listeners(6003, stack=pair.b)
        stream = await trio_netstack.connect_tcp(B_IP, 6003, stack=pair.a)
        server = await listener.accept()
        await server.send_all(b"unread by A")
        await stream.send_all(b"x")
        assert await server.receive_some() == b"x"  # B's data has reached A by now
        start = trio.current_time()
        failure: list[BaseException] = []

        async def keep_sending() -> None:
            for i in range(100):
                try:
                    await server.send_all(b"message %d\n" % i)
                except trio.BrokenResourceError as exc:
                    failure.append(exc)
                    return
                await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_sending)
            await trio.sleep(0.25)
            await stream.aclose()  # unread data: RST instead of FIN
            await trio.sleep(10)  # the observation window, virtual time
        from_a, from_b = rsts(pair.wire_a, start), rsts(pair.wire_b, start)
        report = (
            f"RSTs from A {[round(s.time - start, 3) for s in from_a]}, from B "
            f"{[round(s.time - start, 3) for s in from_b]}; A tcp {dict(pair.a.statistics().tcp)}"
            f"; B tcp {dict(pair.b.statistics().tcp)}"
        )
        print("\n" + report)
        assert failure and isinstance(failure[0].__cause__, ConnectionResetError), report
        assert 1 <= len(from_a) <= 3 and len(from_b) == 0, report
        assert stream.statistics().state == "CLOSED", report
        assert server.statistics().state == "CLOSED", report
        for stack in (pair.a, pair.b):
            assert stack.statistics().tcp["connections"] == 0, report
        await server.aclose()
