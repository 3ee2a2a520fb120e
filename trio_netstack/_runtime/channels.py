"""The channels that join the layer tasks: bounded memory channels that hand over batches.

A :class:`Mailbox` is a trio memory channel specialised for the stack's shape:
many producers, one consuming layer task, and a consumer that wants *everything*
queued in one wake-up. Measured on CPython 3.11 (DESIGN.md section 5, and
``tools/bench``): a hop through ``trio.open_memory_channel`` with the usual
"``receive_nowait`` until ``WouldBlock``" drain costs three raised exceptions and
an extra checkpoint per wake-up, about 8 us per hop against 4.5 us for the bare
scheduler pass. The mailbox takes the whole queue with one list swap, raises
nothing on the fast paths, and parks and wakes tasks with the same
``trio.lowlevel`` primitives trio's own channels use, so cancellation and
``trio.testing`` clocks behave exactly as with them.

Semantics:

* ``put_nowait`` never blocks: it returns ``False`` when the mailbox is full or
  closed (upward delivery: the caller counts a drop; TCP recovers).
* ``await put`` blocks while the mailbox is full (downward delivery: backpressure
  towards the producer). When there is room it returns without a checkpoint: the
  layer tasks checkpoint once per round at ``get_batch``, and a checkpoint per
  batch sent would add a scheduler pass to every hop (the caller's next
  ``get_batch`` is the checkpoint).
* ``await get_batch(deadline)`` returns everything queued (in order), waiting for
  the first message until ``deadline``; an empty list means the deadline came
  first. It checkpoints exactly once either way, so a busy layer still yields.
* ``close`` (by the consumer when it ends) fails parked and later producers with
  ``trio.ClosedResourceError``, so a blocked ``put`` never outlives its consumer.

Timers: a layer task sleeps "until a message arrives or the machine's next
deadline". A ``trio.move_on_at`` scope per wait costs about 7 us (entering,
registering and retiring a deadline), more than the hop itself, and TCP
connection tasks wait with a deadline almost always (RTO, delayed ACK). So the
mailboxes of a stack share one :class:`AlarmClock`: ``get_batch(deadline)``
registers the deadline with it, and one clock task, sleeping in a single cancel
scope until the earliest registered deadline, rings the mailbox (wakes its
consumer with an empty batch) when it passes. A registration is only ever moved
*earlier*: when a machine's deadline moves later (an RTO restarted by every ACK)
the old, earlier alarm rings anyway and the consumer, finding nothing due,
registers the new one (one spurious wake-up per timer period instead of a scope
per packet). Consumers therefore treat an empty batch as "check your timers",
never as "the deadline has passed".
"""

from __future__ import annotations

import heapq
import math
from typing import Generic, TypeVar

import trio
from trio.lowlevel import Abort, RaiseCancelT, Task

T = TypeVar("T")


class Mailbox(Generic[T]):
    """A bounded multi-producer, single-consumer channel that delivers batches."""

    __slots__ = (
        "_alarm",
        "_capacity",
        "_clock",
        "_closed",
        "_items",
        "_rang",
        "_senders",
        "_waiter",
    )

    def __init__(self, capacity: int, clock: AlarmClock | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"a mailbox needs room for at least one message, not {capacity}")
        self._capacity = capacity
        self._clock = clock
        self._alarm = math.inf  # the deadline registered with the clock
        self._rang = False  # the clock rang while the consumer was busy
        self._items: list[T] = []
        self._waiter: Task | None = None  # the consumer, parked in get_batch
        self._senders: list[Task] = []  # producers parked in put (mailbox full)
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, item: T) -> bool:
        """Queue ``item`` unless the mailbox is full or closed; never blocks."""
        items = self._items
        if self._closed or len(items) >= self._capacity:
            return False
        items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)
        return True

    @property
    def idle(self) -> bool:
        """The consumer is parked in :meth:`get_batch` and nothing is queued for it."""
        return self._waiter is not None and not self._items and not self._closed

    def wake_by(self, deadline: float | None) -> None:
        """Make sure a parked consumer wakes by ``deadline`` (None: no change).

        For work done on the consumer's behalf while it was parked (a machine fed
        synchronously by another task) that moved the consumer's next deadline earlier.
        """
        if deadline is None or deadline >= self._alarm or self._waiter is None:
            return
        if self._clock is None or deadline <= trio.current_time():
            self._ring()  # it re-reads its deadline on waking
        else:
            self._clock.arm(self, deadline)

    async def put(self, item: T) -> None:
        """Queue ``item``, waiting while the mailbox is full (see the module notes)."""
        while not self.put_nowait(item):
            if self._closed:
                # A stack stopping cancels its tasks as it closes their mailboxes: a
                # cancelled producer sees Cancelled, not an error of its own.
                await trio.lowlevel.checkpoint_if_cancelled()
                raise trio.ClosedResourceError("the receiving layer has stopped")
            task = trio.lowlevel.current_task()
            self._senders.append(task)

            def abort(_: RaiseCancelT, task: Task = task) -> Abort:
                self._senders.remove(task)
                return Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)

    async def get_batch(self, deadline: float = math.inf) -> list[T]:
        """Everything queued, waiting for the first message until ``deadline``.

        May return an empty list early (see the module notes on timers).
        """
        if self._items or self._rang:
            await trio.lowlevel.checkpoint()
        elif deadline == math.inf:
            await self._wait()
        elif self._clock is None:
            with trio.move_on_at(deadline):
                await self._wait()
        elif deadline <= trio.current_time():
            await trio.lowlevel.checkpoint()
        else:
            if deadline < self._alarm:
                self._clock.arm(self, deadline)
            await self._wait()
        self._rang = False
        items = self._items
        if not items:
            return []
        self._items = []
        if self._senders:
            # Every parked producer retries; those that still find no room park again.
            for task in self._senders:
                trio.lowlevel.reschedule(task)
            self._senders.clear()
        return items

    async def _wait(self) -> None:
        if self._waiter is not None:
            raise trio.BusyResourceError("a mailbox has a single consumer")
        task = trio.lowlevel.current_task()
        self._waiter = task

        def abort(_: RaiseCancelT) -> Abort:
            self._waiter = None
            return Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _ring(self) -> None:
        self._alarm = math.inf
        self._rang = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    def close(self) -> None:
        """The consumer is gone: fail parked and future producers."""
        if self._clock is not None and self._alarm != math.inf:
            self._clock.disarm(self)
        self._closed = True
        self._items = []
        senders, self._senders = self._senders, []
        for task in senders:
            trio.lowlevel.reschedule(task)


class AlarmClock:
    """Rings mailboxes at their deadlines; its :meth:`run` is one task per stack."""

    #: Rebuild the heap when stale entries outnumber live alarms this many times.
    STALE_FACTOR = 4

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Mailbox[object]]] = []
        self._order = 0  # tie-breaker: mailboxes are not comparable
        self._live = 0  # mailboxes with an alarm set
        self._scope: trio.CancelScope | None = None

    def __len__(self) -> int:
        return self._live

    def arm(self, box: Mailbox[T], deadline: float) -> None:
        if box._alarm == math.inf:
            self._live += 1
        box._alarm = deadline
        self._order += 1
        entry: tuple[float, int, Mailbox[object]] = (deadline, self._order, box)  # type: ignore[assignment]
        heapq.heappush(self._heap, entry)
        heap = self._heap
        if len(heap) > 64 and len(heap) > self.STALE_FACTOR * self._live:
            self._heap = [e for e in heap if e[2]._alarm == e[0]]
            heapq.heapify(self._heap)
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    def disarm(self, box: Mailbox[T]) -> None:
        # The heap entry stays (stale) until it comes due or the heap is rebuilt.
        if box._alarm != math.inf:
            box._alarm = math.inf
            self._live -= 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        heap = self._heap
        task_status.started()
        while True:
            heap = self._heap
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            heap = self._heap
            while heap and heap[0][0] <= now:
                deadline, _, box = heapq.heappop(heap)
                if box._alarm == deadline:  # else stale: moved earlier, rang or closed
                    self._live -= 1
                    box._ring()


def send_upward(mailbox: Mailbox[T], item: T) -> bool:
    """Upward delivery never blocks: a full queue drops (the caller counts it)."""
    return mailbox.put_nowait(item)


def offer(channel: trio.MemorySendChannel[T], item: T) -> bool:
    """``send_nowait`` on a trio channel facing the application: False when full or closed."""
    try:
        channel.send_nowait(item)
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True
