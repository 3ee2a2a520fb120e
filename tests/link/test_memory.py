"""In-memory links and hubs: ordered, copying, bounded, deterministic."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_netstack.link import MemoryHub, memory_link_pair


def frame(n: int, size: int = 60) -> bytes:
    """A distinguishable fake Ethernet frame: broadcast header, then the number."""
    body = n.to_bytes(4, "big")
    return b"\xff" * 6 + b"\x02\0\0\0\0\x01" + b"\x88\xb5" + body + bytes(size - 18)


async def test_pair_delivers_in_order_both_ways() -> None:
    a, b = memory_link_pair()
    await a.send_batch([frame(1), frame(2)])
    await a.send_batch([frame(3)])
    await b.send_batch([frame(10)])
    assert await b.receive_batch() == [(frame(1), 0), (frame(2), 0), (frame(3), 0)]
    assert await a.receive_batch() == [(frame(10), 0)]
    assert a.stats.snapshot() == {
        "rx_frames": 1,
        "rx_bytes": 60,
        "tx_frames": 3,
        "tx_bytes": 180,
        "rx_dropped": 0,
        "tx_dropped": 0,
        "rx_batches": 1,
    }
    assert b.stats.rx_frames == 3 and b.stats.rx_batches == 1
    assert a.hw_address is None and a.mtu == 1500 and (a.name, b.name) == ("mem0", "mem1")


async def test_frames_are_copied_on_send() -> None:
    a, b = memory_link_pair()
    buf = bytearray(frame(1))
    view = memoryview(bytearray(frame(2)))
    await a.send_batch([buf, view])
    buf[20] = 0xAA
    view[20] = 0xBB
    got = await b.receive_batch()
    assert got == [(frame(1), 0), (frame(2), 0)]
    assert all(type(f) is bytes for f, _ in got)


async def test_hub_repeats_to_every_other_port() -> None:
    hub = MemoryHub()
    a, b, c = hub.attach("a"), hub.attach("b"), hub.attach("c")
    assert hub.ports == ["a", "b", "c"]
    await a.send_batch([frame(1)])
    await c.send_batch([frame(3)])
    assert await b.receive_batch() == [(frame(1), 0), (frame(3), 0)]
    assert await c.receive_batch() == [(frame(1), 0)]
    assert await a.receive_batch() == [(frame(3), 0)]
    with pytest.raises(ValueError, match="already attached"):
        hub.attach("a")


async def test_full_queue_pauses_the_sender_until_the_receiver_takes_frames() -> None:
    a, b = memory_link_pair(queue_frames=4, max_batch=3)
    frames = [frame(i) for i in range(10)]
    assert a.try_send(frames) == 4  # the fast path takes what fits, never waits
    assert a.try_send(frames[4:]) == 0
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:

        async def send_rest() -> None:
            await a.send_batch(frames[4:])  # waits while b's queue is full

        nursery.start_soon(send_rest)
        await trio.testing.wait_all_tasks_blocked()
        assert a.stats.tx_frames == 4  # paused, nothing lost
        with trio.fail_after(1):
            while len(got) < 10:
                got.extend(f for f, _ in await b.receive_batch())
    assert got == frames
    assert b.stats.rx_dropped == 0 and a.stats.tx_frames == 10


async def test_without_pause_a_full_queue_drops_without_blocking_the_sender() -> None:
    a, b = memory_link_pair(queue_frames=4, pause=False)
    with trio.fail_after(1):  # a blocking sender would hang here
        await a.send_batch([frame(i) for i in range(10)])
    assert b.stats.rx_dropped == 6
    assert a.stats.tx_frames == 10 and a.stats.tx_dropped == 0
    assert [f for f, _ in await b.receive_batch()] == [frame(i) for i in range(4)]


async def test_too_long_frames_are_tx_dropped() -> None:
    a, b = memory_link_pair(mtu=100)
    await a.send_batch([frame(1, 114), frame(2, 115), frame(3, 60)])
    assert a.stats.tx_dropped == 1 and a.stats.tx_frames == 2
    assert [f for f, _ in await b.receive_batch()] == [frame(1, 114), frame(3, 60)]


async def test_max_batch_bounds_one_receive() -> None:
    a, b = memory_link_pair(max_batch=3)
    await a.send_batch([frame(i) for i in range(7)])
    sizes = [len(await b.receive_batch()) for _ in range(3)]
    assert sizes == [3, 3, 1]
    assert b.stats.rx_batches == 3 and b.stats.rx_frames == 7


async def test_receive_is_cancel_safe() -> None:
    a, b = memory_link_pair()
    with trio.move_on_after(0.01) as scope:
        await b.receive_batch()
    assert scope.cancelled_caught
    await a.send_batch([frame(1)])
    assert await b.receive_batch() == [(frame(1), 0)]


async def test_receive_waits_for_a_frame(autojump_clock: trio.abc.Clock) -> None:
    a, b = memory_link_pair()
    got: list[tuple[float, bytes]] = []

    async def receiver() -> None:
        batch = await b.receive_batch()
        got.append((trio.current_time(), batch[0][0]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        start = trio.current_time()
        await trio.sleep(1)
        await a.send_batch([frame(5)])
    assert got == [(start + 1, frame(5))]


async def test_close_semantics() -> None:
    a, b = memory_link_pair()
    closed_error: list[BaseException] = []

    async def blocked_receiver() -> None:
        try:
            await b.receive_batch()
        except trio.ClosedResourceError as exc:
            closed_error.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocked_receiver)
        await trio.testing.wait_all_tasks_blocked()
        await b.aclose()
    assert len(closed_error) == 1

    await b.aclose()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        await b.receive_batch()
    with pytest.raises(trio.ClosedResourceError):
        await b.send_batch([frame(1)])
    # The peer is gone: like an unplugged cable, frames just vanish.
    await a.send_batch([frame(2)])
    assert a.stats.tx_frames == 1
    await a.aclose()


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        MemoryHub(mtu=10)
    with pytest.raises(ValueError):
        memory_link_pair(queue_frames=0)
    with pytest.raises(ValueError):
        memory_link_pair(max_batch=0)
