"""The layer mailboxes and the alarm clock that delivers their timer wake-ups."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from trio_netstack._runtime.channels import AlarmClock, Mailbox


async def test_batch_in_order_and_bounded() -> None:
    box: Mailbox[int] = Mailbox(3)
    assert [box.put_nowait(i) for i in range(5)] == [True, True, True, False, False]
    assert len(box) == 3
    assert await box.get_batch() == [0, 1, 2]
    assert len(box) == 0
    with pytest.raises(ValueError, match="at least one"):
        Mailbox(0)


async def test_consumer_wakes_on_put() -> None:
    box: Mailbox[str] = Mailbox(8)
    got: list[list[str]] = []

    async def consumer() -> None:
        got.append(await box.get_batch())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        box.put_nowait("a")
        box.put_nowait("b")  # queued before the consumer runs: same batch
    assert got == [["a", "b"]]


async def test_put_waits_for_room_and_close_fails_it() -> None:
    box: Mailbox[int] = Mailbox(1)
    await box.put(1)  # room: returns at once
    done: list[int] = []

    async def producer(value: int) -> None:
        await box.put(value)
        done.append(value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer, 2)
        await trio.testing.wait_all_tasks_blocked()
        assert done == []  # full: parked
        assert await box.get_batch() == [1]
        await trio.testing.wait_all_tasks_blocked()
        assert done == [2]
        assert await box.get_batch() == [2]

    await box.put(3)
    failed: list[BaseException] = []

    async def doomed_producer() -> None:
        with pytest.raises(trio.ClosedResourceError) as info:
            await box.put(4)
        failed.append(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(doomed_producer)
        await trio.testing.wait_all_tasks_blocked()
        box.close()
    assert len(failed) == 1
    assert not box.put_nowait(5)


async def test_cancelled_waits_leave_no_trace() -> None:
    box: Mailbox[int] = Mailbox(1)
    with trio.move_on_after(0.01):
        await box.get_batch()
    box.put_nowait(1)
    with trio.move_on_after(0.01):
        await box.put(2)  # full: parked, then cancelled
    assert await box.get_batch() == [1]
    assert box.put_nowait(3)


async def test_single_consumer() -> None:
    box: Mailbox[int] = Mailbox(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.get_batch)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await box.get_batch()
        box.put_nowait(1)  # lets the first consumer finish


async def test_deadline_without_clock(autojump_clock: trio.abc.Clock) -> None:
    box: Mailbox[int] = Mailbox(1)
    start = trio.current_time()
    assert await box.get_batch(start + 5) == []
    assert trio.current_time() == pytest.approx(start + 5)


async def test_clock_rings_at_the_deadline(autojump_clock: trio.abc.Clock) -> None:
    clock = AlarmClock()
    box: Mailbox[int] = Mailbox(4, clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        start = trio.current_time()
        assert await box.get_batch(start + 2) == []
        assert trio.current_time() == pytest.approx(start + 2)
        assert len(clock) == 0
        # A deadline already past returns at once.
        assert await box.get_batch(start) == []
        assert trio.current_time() == pytest.approx(start + 2)
        nursery.cancel_scope.cancel()


async def test_moving_a_deadline_later_rings_early_once(autojump_clock: trio.abc.Clock) -> None:
    # An RTO restarted by every ACK: the earlier alarm rings, the consumer re-arms.
    clock = AlarmClock()
    box: Mailbox[int] = Mailbox(4, clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        t0 = trio.current_time()

        async def feed() -> None:
            await trio.sleep(1)
            box.put_nowait(1)

        nursery.start_soon(feed)
        assert await box.get_batch(t0 + 2) == [1]  # woken by the message at t0+1
        assert trio.current_time() == pytest.approx(t0 + 1)
        assert await box.get_batch(t0 + 3) == []  # the alarm still set for t0+2 rings
        assert trio.current_time() == pytest.approx(t0 + 2)
        assert await box.get_batch(t0 + 3) == []
        assert trio.current_time() == pytest.approx(t0 + 3)
        nursery.cancel_scope.cancel()


async def test_earlier_deadline_moves_the_clock(autojump_clock: trio.abc.Clock) -> None:
    clock = AlarmClock()
    late: Mailbox[int] = Mailbox(1, clock)
    early: Mailbox[int] = Mailbox(1, clock)
    woke: list[tuple[str, float]] = []

    async def wait(name: str, box: Mailbox[int], after: float) -> None:
        await box.get_batch(trio.current_time() + after)
        woke.append((name, trio.current_time()))

    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        t0 = trio.current_time()
        async with trio.open_nursery() as waiters:
            waiters.start_soon(wait, "late", late, 100)
            await trio.testing.wait_all_tasks_blocked()
            waiters.start_soon(wait, "early", early, 1)
        nursery.cancel_scope.cancel()
    assert [n for n, _ in woke] == ["early", "late"]
    assert woke[0][1] == pytest.approx(t0 + 1)
    assert woke[1][1] == pytest.approx(t0 + 100)


async def test_ring_while_busy_is_not_lost(autojump_clock: trio.abc.Clock) -> None:
    clock = AlarmClock()
    box: Mailbox[int] = Mailbox(1, clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        t0 = trio.current_time()
        box.put_nowait(1)
        assert await box.get_batch(t0 + 1) == [1]  # nothing armed: a message was waiting
        box._alarm = math.inf
        clock.arm(box, t0 + 1)
        await trio.sleep(2)  # the consumer is "busy" when the alarm rings
        assert await box.get_batch(t0 + 10) == []  # returns at once: the ring was kept
        assert trio.current_time() == pytest.approx(t0 + 2)
        nursery.cancel_scope.cancel()


async def test_stale_alarms_stay_bounded(autojump_clock: trio.abc.Clock) -> None:
    clock = AlarmClock()
    boxes: list[Mailbox[int]] = [Mailbox(1, clock) for _ in range(10)]
    t0 = trio.current_time()
    for round_ in range(200):
        for box in boxes:
            clock.arm(box, t0 + 1000 - round_)  # each one earlier than the last
    assert len(clock) == 10
    assert len(clock._heap) <= max(64, AlarmClock.STALE_FACTOR * 10) + 1
    for box in boxes:
        box.close()
    assert len(clock) == 0


async def test_cancelled_producer_sees_cancelled_when_closed_too() -> None:
    # A stopping stack cancels its tasks and closes their mailboxes in one go.
    box: Mailbox[int] = Mailbox(1)
    box.put_nowait(0)
    outcome: list[str] = []

    async def producer(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            try:
                await box.put(1)
            except trio.ClosedResourceError:
                outcome.append("closed")
                return
        outcome.append("cancelled" if scope.cancelled_caught else "returned")

    async with trio.open_nursery() as nursery:
        scope = await nursery.start(producer)
        await trio.testing.wait_all_tasks_blocked()
        box.close()  # reschedules the producer before the cancel can abort its wait
        scope.cancel()
    assert outcome == ["cancelled"]
