"""In-memory links: a cable between two stacks, or a hub joining many.

For tests and the pure-protocol benchmark. Fully deterministic: no randomness,
no clock, delivery in send order. Each port owns a bounded queue (a Trio memory
channel) for what it receives.

By default the cable has IEEE 802.3x flow control ("pause"): a port whose queue
is full holds the senders back instead of losing frames. ``try_send`` takes only
what fits in every other port's queue (a NIC whose transmit ring is full) and
``send_batch`` waits until the receivers have taken frames. Without it, a stack
that sends a whole congestion window in one synchronous burst (thousands of
frames, with no wire rate to spread them) overflowed the receiver's queue on
every window. The receive side never waits for a sender, so two stacks cannot
deadlock each other through the cable. With ``pause=False`` a full queue drops
(counted in the receiver's ``rx_dropped``) and senders never wait, as on a wire
without flow control. Faults (loss, delay ...) are the business of
``ImpairedLink``, which wraps these like any other link.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from .base import Link, LinkStatistics, RxFrame

__all__ = ["MemoryHub", "MemoryLink", "memory_link_pair"]

_ETH_HEADER = 14


class MemoryHub:
    """A dumb hub: a frame sent on one port reaches every other attached port."""

    def __init__(
        self, mtu: int = 1500, queue_frames: int = 1024, *, max_batch: int = 256, pause: bool = True
    ) -> None:
        if mtu < 68:
            raise ValueError("mtu must be at least 68 (RFC 791)")
        if queue_frames < 1:
            raise ValueError("queue_frames must be at least 1")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.mtu = mtu
        self.queue_frames = queue_frames
        self.max_batch = max_batch
        self.pause = pause
        self._space = trio.lowlevel.ParkingLot()  # senders waiting for queue room
        # Insertion order is attach order, so delivery order is deterministic.
        self._ports: dict[str, MemoryLink] = {}

    @property
    def ports(self) -> list[str]:
        return list(self._ports)

    def attach(self, name: str) -> MemoryLink:
        """A new port called ``name`` (unique on this hub)."""
        if name in self._ports:
            raise ValueError(f"port {name!r} is already attached to this hub")
        port = MemoryLink(self, name)
        self._ports[name] = port
        return port

    def _detach(self, port: MemoryLink) -> None:
        if self._ports.get(port.name) is port:
            del self._ports[port.name]

    def _room(self, sender: MemoryLink) -> int:
        """Frames every other port can still queue (pause); unlimited without pause."""
        if not self.pause:
            return 1 << 30
        room = 1 << 30
        for port in self._ports.values():
            if port is not sender:
                room = min(room, self.queue_frames - port._queued)
        return room

    def _deliver(self, sender: MemoryLink, frames: list[bytes]) -> None:
        for port in self._ports.values():
            if port is not sender:
                port._offer(frames)


class MemoryLink(Link):
    """One port of a MemoryHub (a pair is a hub with two ports)."""

    def __init__(self, hub: MemoryHub, name: str) -> None:
        self.name = name
        self.mtu = hub.mtu
        self.hw_address = None
        self.stats = LinkStatistics()
        self.max_batch = hub.max_batch
        self._hub = hub
        self._max_frame = hub.mtu + _ETH_HEADER
        self._send_channel, self._receive_channel = trio.open_memory_channel[bytes](
            hub.queue_frames
        )
        self._queued = 0  # frames in our receive queue
        self._closed = False

    def __repr__(self) -> str:
        return f"<MemoryLink {self.name!r}>"

    def _offer(self, frames: list[bytes]) -> None:
        put = self._send_channel.send_nowait
        for frame in frames:
            try:
                put(frame)
            except trio.WouldBlock:
                self.stats.rx_dropped += 1
            except trio.BrokenResourceError:
                return  # this port closed meanwhile: like an unplugged cable
            else:
                self._queued += 1

    async def receive_batch(self) -> list[RxFrame]:
        if self._closed:
            raise trio.ClosedResourceError("memory link is closed")
        receive = self._receive_channel
        # Channel receive is cancel-safe: a cancelled wait took nothing.
        first = await receive.receive()
        batch: list[RxFrame] = [(first, 0)]
        nbytes = len(first)
        limit = self.max_batch
        try:
            while len(batch) < limit:
                frame = receive.receive_nowait()
                batch.append((frame, 0))
                nbytes += len(frame)
        except trio.WouldBlock:
            pass
        stats = self.stats
        stats.rx_frames += len(batch)
        stats.rx_bytes += nbytes
        stats.rx_batches += 1
        self._queued -= len(batch)
        space = self._hub._space
        if space:
            space.unpark_all()
        return batch

    async def send_batch(self, frames: Sequence[bytes | bytearray | memoryview]) -> None:
        done = self.try_send(frames)
        while done < len(frames):
            # Paused: a receiver's queue is full until it takes frames.
            await self._hub._space.park()
            done += self.try_send(frames[done:])
        # An async API call should still be a checkpoint so a sender in a tight loop
        # lets the receivers run.
        await trio.lowlevel.checkpoint()

    def try_send(self, frames: Sequence[bytes | bytearray | memoryview]) -> int:
        if self._closed:
            raise trio.ClosedResourceError("memory link is closed")
        stats = self.stats
        limit = self._max_frame
        room = self._hub._room(self)
        out: list[bytes] = []
        done = 0
        for frame in frames:
            if len(out) >= room:
                break
            done += 1
            # Copy: the caller may reuse its bytearray as soon as we return.
            data = bytes(frame)
            if len(data) > limit:
                stats.tx_dropped += 1
                continue
            out.append(data)
            stats.tx_frames += 1
            stats.tx_bytes += len(data)
        if out:
            self._hub._deliver(self, out)
        return done

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub._detach(self)
            # Closing our receive end makes later offers fail fast; a task blocked
            # in receive_batch on this port gets ClosedResourceError.
            self._receive_channel.close()
        await trio.lowlevel.checkpoint()


def memory_link_pair(
    *, mtu: int = 1500, queue_frames: int = 1024, max_batch: int = 256, pause: bool = True
) -> tuple[MemoryLink, MemoryLink]:
    """Two links joined by a cable: what one sends, the other receives.

    ``max_batch`` frames are handed over per wake-up, like Linux's per-softirq
    ``netdev_budget`` (300): with 64, a receiver that is one stack among several tasks
    in one process fell behind a sender's bursts and overflowed ``queue_frames``.
    """
    hub = MemoryHub(mtu=mtu, queue_frames=queue_frames, max_batch=max_batch, pause=pause)
    return hub.attach("mem0"), hub.attach("mem1")
