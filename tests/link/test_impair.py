"""ImpairedLink and Impairment: seeded, counted, on Trio's clock."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
import trio
import trio.testing

from trio_netstack.link import (
    RX_CSUM_TRUSTED,
    ImpairedLink,
    Impairment,
    Link,
    LinkStatistics,
    RxFrame,
    memory_link_pair,
)


def frame(n: int, size: int = 60) -> bytes:
    body = n.to_bytes(4, "big")
    return b"\xff" * 6 + b"\x02\0\0\0\0\x01" + b"\x88\xb5" + body + bytes(size - 18)


def number(f: bytes) -> int:
    return int.from_bytes(f[14:18], "big")


class ScriptedLink(Link):
    """An inner link whose received frames (with flags) the test pushes in."""

    def __init__(self) -> None:
        self.name = "scripted0"
        self.mtu = 1400
        self.hw_address = b"\x02\0\0\0\0\x09"
        self.stats = LinkStatistics()
        self.sent: list[tuple[float, bytes]] = []
        self._send, self._recv = trio.open_memory_channel[RxFrame](100_000)
        self.closed = False

    def push(self, frames: Sequence[RxFrame]) -> None:
        for f in frames:
            self._send.send_nowait(f)

    async def receive_batch(self) -> list[RxFrame]:
        batch = [await self._recv.receive()]
        while True:
            try:
                batch.append(self._recv.receive_nowait())
            except trio.WouldBlock:
                return batch

    async def send_batch(self, frames: Sequence[bytes | bytearray | memoryview]) -> None:
        now = trio.current_time()
        self.sent.extend((now, bytes(f)) for f in frames)
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


async def drain_rx(link: Link, expected_at_least: int, *, limit: float = 60) -> list[RxFrame]:
    """Receive until ``expected_at_least`` frames came, then until the link is quiet."""
    out: list[RxFrame] = []
    with trio.fail_after(limit):
        while len(out) < expected_at_least:
            out.extend(await link.receive_batch())
    with trio.move_on_after(limit):  # anything still held comes out within the limit
        while True:
            out.extend(await link.receive_batch())
    return out


# -- parse -----------------------------------------------------------------------------


def test_parse_full_spec() -> None:
    imp = Impairment.parse(
        "loss=0.02,dup=0.01,reorder=0.02,delay=5ms,corrupt=0.001,seed=7,jitter=200us,direction=rx"
    )
    assert imp == Impairment(
        loss=0.02,
        dup=0.01,
        reorder=0.02,
        corrupt=0.001,
        delay=0.005,
        jitter=0.0002,
        seed=7,
        direction="rx",
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5ms", 0.005), ("0.005", 0.005), ("5s", 5.0), ("200us", 0.0002), (" 1.5 ms ", 0.0015)],
)
def test_parse_durations(text: str, seconds: float) -> None:
    assert Impairment.parse(f"delay={text}").delay == pytest.approx(seconds)


def test_parse_defaults_percentages_and_last_key_wins() -> None:
    assert Impairment.parse("") == Impairment()
    assert Impairment.parse(" loss = 2% , ").loss == pytest.approx(0.02)
    assert Impairment.parse("loss=0.1,seed=1,seed=2").seed == 2


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("los=0.1", "'los'"),
        ("loss=abc", "'loss'"),
        ("loss=1.5", "'loss'"),
        ("dup=-0.1", "'dup'"),
        ("delay=5 parsecs", "'delay'"),
        ("jitter=-1ms", "'jitter'"),
        ("seed=x", "'seed'"),
        ("direction=up", "'direction'"),
        ("loss", "'loss'"),
    ],
)
def test_parse_errors_name_the_key(text: str, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        Impairment.parse(text)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="loss"):
        Impairment(loss=2)
    with pytest.raises(ValueError, match="delay"):
        Impairment(delay=-1)
    with pytest.raises(ValueError, match="direction"):
        Impairment(direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        Impairment(seed="1")  # type: ignore[arg-type]


# -- loss, duplication, reproducibility ------------------------------------------------


async def lossy_run(imp: Impairment, n: int = 10_000) -> tuple[list[bytes], dict[str, int]]:
    a, b = memory_link_pair(queue_frames=3 * n)
    sender = ImpairedLink(a, imp)
    for start in range(0, n, 100):
        await sender.send_batch([frame(i) for i in range(start, start + 100)])
    received = [f for f, _ in await drain_rx(b, 1, limit=1)]
    return received, sender.impair_stats


async def test_loss_rate_and_reproducibility(autojump_clock: trio.abc.Clock) -> None:
    received, stats = await lossy_run(Impairment(loss=0.1, seed=1, direction="tx"))
    # 10,000 trials at p=0.1: sigma = 30, so +-150 is five sigma.
    assert 850 <= stats["lost"] <= 1150
    assert len(received) + stats["lost"] == 10_000
    assert [number(f) for f in received] == sorted(number(f) for f in received)
    again, stats_again = await lossy_run(Impairment(loss=0.1, seed=1, direction="tx"))
    assert again == received and stats_again == stats
    other, _ = await lossy_run(Impairment(loss=0.1, seed=2, direction="tx"))
    assert other != received


async def test_rx_direction_only_impairs_receives(autojump_clock: trio.abc.Clock) -> None:
    a, b = memory_link_pair(queue_frames=5000)
    link = ImpairedLink(b, Impairment(loss=0.5, seed=3, direction="rx"))
    await link.send_batch([frame(i) for i in range(1000)])  # tx not impaired
    assert [f for f, _ in await drain_rx(a, 1000, limit=1)] == [frame(i) for i in range(1000)]
    await a.send_batch([frame(i) for i in range(1000)])
    got = await drain_rx(link, 1, limit=1)
    assert len(got) + link.impair_stats["lost"] == 1000
    assert 350 <= link.impair_stats["lost"] <= 650


async def test_duplicates_follow_their_original(autojump_clock: trio.abc.Clock) -> None:
    received, stats = await lossy_run(Impairment(dup=0.2, seed=5), n=2000)
    assert 250 <= stats["duplicated"] <= 550
    assert len(received) == 2000 + stats["duplicated"]
    numbers = [number(f) for f in received]
    assert sorted(set(numbers)) == list(range(2000))
    pairs = sum(1 for x, y in itertools.pairwise(numbers) if x == y)
    assert pairs == stats["duplicated"]


async def test_noop_impairment_passes_everything(autojump_clock: trio.abc.Clock) -> None:
    received, stats = await lossy_run(Impairment(seed=1), n=500)
    assert received == [frame(i) for i in range(500)]
    assert set(stats.values()) == {0}


# -- corruption ------------------------------------------------------------------------


async def test_corrupt_flips_exactly_one_bit_beyond_the_header(
    autojump_clock: trio.abc.Clock,
) -> None:
    inner = ScriptedLink()
    link = ImpairedLink(inner, Impairment(corrupt=1.0, seed=11))
    originals = [frame(i, 60 + i) for i in range(300)]
    inner.push([(f, RX_CSUM_TRUSTED) for f in originals])
    inner.push([(b"\x01" * 14, RX_CSUM_TRUSTED)])  # header only: nothing to corrupt
    got = await drain_rx(link, 301, limit=1)
    assert link.impair_stats["corrupted"] == 300
    touched = set()
    for orig, (data, flags) in zip(originals, got, strict=False):
        assert len(data) == len(orig) and flags == 0
        diff = [(i, x ^ y) for i, (x, y) in enumerate(zip(orig, data, strict=True)) if x != y]
        assert len(diff) == 1
        index, xor = diff[0]
        assert index >= 14 and xor.bit_count() == 1
        touched.add(index)
    assert len(touched) > 30  # spread over the frame, not one fixed spot
    assert got[-1] == (b"\x01" * 14, RX_CSUM_TRUSTED)


async def test_corrupt_on_send() -> None:
    inner = ScriptedLink()
    link = ImpairedLink(inner, Impairment(corrupt=0.5, seed=4, direction="tx"))
    buf = bytearray(frame(1))
    await link.send_batch([buf] * 200)
    changed = sum(1 for _, f in inner.sent if f != frame(1))
    assert changed == link.impair_stats["corrupted"]
    assert 60 <= changed <= 140


# -- delay, jitter, reordering -----------------------------------------------------------


async def test_rx_delay_is_honoured(autojump_clock: trio.abc.Clock) -> None:
    inner = ScriptedLink()
    link = ImpairedLink(inner, Impairment(delay=0.005, direction="rx", seed=1))
    start = trio.current_time()
    inner.push([(frame(1), RX_CSUM_TRUSTED), (frame(2), 0)])
    got = await link.receive_batch()
    assert trio.current_time() - start == pytest.approx(0.005)
    assert got == [(frame(1), RX_CSUM_TRUSTED), (frame(2), 0)]
    assert link.impair_stats["delayed"] == 2


async def test_rx_delay_keeps_arrival_spacing(autojump_clock: trio.abc.Clock) -> None:
    a, b = memory_link_pair()
    link = ImpairedLink(b, Impairment(delay=0.050, seed=1))
    arrivals: list[tuple[float, int]] = []

    async def receiver() -> None:
        while len(arrivals) < 3:
            for f, _ in await link.receive_batch():
                arrivals.append((trio.current_time(), number(f)))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        for i in range(3):
            await a.send_batch([frame(i)])
            await trio.sleep(0.010)
    assert [n for _, n in arrivals] == [0, 1, 2]
    for (t, _), expected in zip(arrivals, (0.050, 0.060, 0.070), strict=True):
        assert t - start == pytest.approx(expected)


async def test_rx_receive_is_cancel_safe_while_frames_are_held(
    autojump_clock: trio.abc.Clock,
) -> None:
    inner = ScriptedLink()
    link = ImpairedLink(inner, Impairment(delay=1.0, direction="rx", seed=1))
    inner.push([(frame(1), 0)])
    with trio.move_on_after(0.5):
        await link.receive_batch()
    assert link.held_frames == 1
    assert await link.receive_batch() == [(frame(1), 0)]


async def test_tx_delay_needs_run_and_is_honoured(autojump_clock: trio.abc.Clock) -> None:
    inner = ScriptedLink()
    link = ImpairedLink(inner, Impairment(delay=0.020, direction="tx", seed=1))
    with pytest.raises(RuntimeError, match="run"):
        await link.send_batch([frame(0)])

    inner2 = ScriptedLink()
    link = ImpairedLink(inner2, Impairment(delay=0.020, direction="tx", seed=1))
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        start = trio.current_time()
        await link.send_batch([frame(1), frame(2)])
        await trio.sleep(0.005)
        await link.send_batch([frame(3)])
        assert inner2.sent == []
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert [(round(t - start, 6), number(f)) for t, f in inner2.sent] == [
        (0.020, 1),
        (0.020, 2),
        (0.025, 3),
    ]


async def test_jitter_spreads_delays_within_bounds(autojump_clock: trio.abc.Clock) -> None:
    inner = ScriptedLink()
    link = ImpairedLink(inner, Impairment(delay=0.010, jitter=0.004, direction="tx", seed=9))
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        start = trio.current_time()
        await link.send_batch([frame(i) for i in range(200)])
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    delays = [t - start for t, _ in inner.sent]
    assert len(delays) == 200
    assert all(0.006 - 1e-9 <= d <= 0.014 + 1e-9 for d in delays)
    assert max(delays) - min(delays) > 0.006


async def test_reordering_really_reorders(autojump_clock: trio.abc.Clock) -> None:
    a, b = memory_link_pair(queue_frames=5000)
    link = ImpairedLink(b, Impairment(reorder=0.2, seed=21, direction="rx"))
    await a.send_batch([frame(i) for i in range(1000)])
    got = [number(f) for f, _ in await drain_rx(link, 1000, limit=1)]
    assert sorted(got) == list(range(1000))
    assert got != sorted(got)
    assert 120 <= link.impair_stats["reordered"] <= 280
    # every reordered frame is overtaken by the frames that followed it
    inversions = sum(1 for x, y in itertools.pairwise(got) if x > y)
    assert inversions >= 1


async def test_reordered_frames_arrive_after_later_ones_with_delay(
    autojump_clock: trio.abc.Clock,
) -> None:
    inner = ScriptedLink()
    link = ImpairedLink(inner, Impairment(delay=0.010, reorder=0.5, seed=2, direction="tx"))
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        start = trio.current_time()
        for i in range(40):
            await link.send_batch([frame(i)])
            await trio.sleep(0.001)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert sorted(number(f) for _, f in inner.sent) == list(range(40))
    for t, f in inner.sent:
        # 10 ms plus, for a reordered frame, max(2 * 10 ms, 1 ms) more
        offset = round(t - start - number(f) * 0.001, 6)
        assert offset in (0.010, 0.030)
    assert link.impair_stats["reordered"] == sum(
        1 for t, f in inner.sent if round(t - start - number(f) * 0.001, 6) == 0.030
    )


async def test_held_frames_are_bounded(autojump_clock: trio.abc.Clock) -> None:
    inner = ScriptedLink()
    link = ImpairedLink(inner, Impairment(delay=1, direction="rx", seed=1), max_held=5)
    inner.push([(frame(i), 0) for i in range(10)])
    got = await link.receive_batch()
    assert [number(f) for f, _ in got] == [0, 1, 2, 3, 4]
    assert link.impair_stats["overflow"] == 5 and link.impair_stats["delayed"] == 5


async def test_wrapper_forwards_identity_and_close() -> None:
    inner = ScriptedLink()
    link = ImpairedLink(inner, Impairment(loss=0.5, seed=1))
    assert (link.name, link.mtu, link.hw_address) == ("scripted0", 1400, b"\x02\0\0\0\0\x09")
    assert link.stats is inner.stats
    await link.aclose()
    assert inner.closed
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_batch()
    with pytest.raises(trio.ClosedResourceError):
        await link.send_batch([frame(1)])
