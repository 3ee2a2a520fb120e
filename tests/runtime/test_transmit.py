"""The transmit path: frames go to the device from the sending task, in order.

The stack writes frames with :meth:`Link.try_send` in the task that produced them
and queues only what the device could not take for its ethernet task. These tests
put a device in front of an in-memory cable that is full now and then, and check
that every frame still leaves exactly once and in the order it was produced.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

import trio_netstack
from trio_netstack.link.base import Link, RxFrame
from trio_netstack.link.memory import memory_link_pair


class BusyDevice(Link):
    """A device whose queue takes ``room`` frames, then is full for a millisecond.

    ``send_batch`` (the ethernet task's blocking write) waits until the device has
    drained, as a write waiting for POLLOUT does.
    """

    def __init__(self, inner: Link, room: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.mtu = inner.mtu
        self.hw_address = inner.hw_address
        self.stats = inner.stats
        self.capacity = room
        self.room = room
        self.ready_at = 0.0  # when a full queue has drained
        self.full_events = 0  # try_send calls that could not take everything
        self.blocked_sends = 0  # frames written by send_batch after waiting

    async def receive_batch(self) -> list[RxFrame]:
        return await self.inner.receive_batch()

    def try_send(self, frames: Sequence[bytes | bytearray | memoryview]) -> int:
        now = trio.current_time()
        if not self.room and now >= self.ready_at:
            self.room = self.capacity
        take = min(self.room, len(frames))
        if take:
            assert self.inner.try_send(frames[:take]) == take
            self.room -= take
            if not self.room:
                self.ready_at = now + 0.001
        if take < len(frames):
            self.full_events += 1
        return take

    async def send_batch(self, frames: Sequence[bytes | bytearray | memoryview]) -> None:
        done = 0
        while True:
            done += self.try_send(frames[done:])
            if done >= len(frames):
                break
            await trio.sleep_until(self.ready_at)
        self.blocked_sends += len(frames)
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_device_full_keeps_order_and_loses_nothing(autojump_clock: trio.abc.Clock) -> None:
    mem_a, mem_b = memory_link_pair()
    device = BusyDevice(mem_a, room=3)
    count = 400
    received: list[int] = []
    async with (
        trio_netstack.open_stack(device, ip="192.0.2.1/24", secret=1) as a,
        trio_netstack.open_stack(mem_b, ip="192.0.2.2/24", secret=2) as b,
    ):
        with (
            trio_netstack.open_udp_socket(local_port=9, receive_queue=count, stack=b) as server,
            trio_netstack.open_udp_socket(stack=a) as client,
        ):

            async def receive_all() -> None:
                while len(received) < count:
                    data, _ = await server.receive_from()
                    received.append(int.from_bytes(data, "big"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive_all)
                with trio.fail_after(30):
                    for i in range(count):
                        await client.send_to(i.to_bytes(4, "big"), ("192.0.2.2", 9))
                        await trio.sleep(0.0001)  # a sender paced at 10,000 datagrams/s
            # The device was full, most frames waited in the ethernet task, all left.
            assert device.full_events >= 2
            assert device.blocked_sends > count // 2
            assert a.interface().tx_queued == 0
            assert a.statistics().runtime.get("tx_queue_full", 0) == 0
    assert received == list(range(count))


async def test_tcp_over_busy_device_delivers_every_byte(autojump_clock: trio.abc.Clock) -> None:
    mem_a, mem_b = memory_link_pair()
    device = BusyDevice(mem_a, room=2)
    data = bytes(range(256)) * 4000  # about 1 MB
    async with (
        trio_netstack.open_stack(device, ip="192.0.2.1/24", secret=3) as a,
        trio_netstack.open_stack(mem_b, ip="192.0.2.2/24", secret=4) as b,
    ):
        [listener] = await trio_netstack.open_tcp_listeners(80, stack=b)
        got = bytearray()
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                stream = await listener.accept()
                while chunk := await stream.receive_some():
                    got.extend(chunk)
                await stream.aclose()

            nursery.start_soon(serve)
            with trio.fail_after(60):
                stream = await trio_netstack.connect_tcp("192.0.2.2", 80, stack=a)
                await stream.send_all(data)
                await stream.send_eof()
                assert await stream.receive_some() == b""
                await stream.aclose()
        await listener.aclose()
        assert device.full_events > 10
        stats = a.statistics()
        # Frames were queued behind a full device, never dropped for lack of room.
        assert stats.runtime.get("tx_queue_full", 0) == 0
    assert bytes(got) == data
