"""What the descriptor devices (TAP, AF_PACKET) share: a non-blocking fd drained in batches.

A receive waits once for readability and then reads until EAGAIN (or ``max_batch``
frames), because one Trio wake-up costs as much as ten or twenty reads (see
docs/design.md, "Performance"). A send writes until EAGAIN and only then waits for
writability (:func:`~.base.send_when_writable`).

The per-frame loops stay in the subclasses on purpose: what a read returns differs
(a virtio header to strip, auxdata to decode) and a hook called per frame would cost
as much as the work it does. The base class owns everything around those loops: the
closed state, the readiness waits, the translation of errors and the counters.
"""

from __future__ import annotations

import abc
import socket
from collections.abc import Callable, Sequence
from typing import ClassVar

import trio

from .base import Link, LinkStatistics, RxFrame, send_when_writable

__all__ = ["FdLink"]


class FdLink(Link):
    """A link over one non-blocking file descriptor or socket.

    Subclasses implement :meth:`_read_frames` (the receive loop), :meth:`_broken`
    (what a fatal error means on this device) and :meth:`_close_device`, and set
    ``_write`` (one frame in, its bytes written out) before the first send.
    """

    #: Names the device in messages ("TAP link is closed").
    _kind: ClassVar[str] = "descriptor"
    #: errno values of one write that mean "this frame was refused", not "the link is gone".
    _frame_refused: ClassVar[frozenset[int]] = frozenset()

    def __init__(
        self,
        waitable: int | socket.socket,
        fileno: int,
        name: str,
        *,
        mtu: int,
        hw_address: bytes | None,
        netns: str | None,
        max_batch: int,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._waitable = waitable  # what trio's wait_readable/wait_writable are given
        self._fileno = fileno
        self._closed = False
        self.name = name
        self.netns = netns
        self.mtu = mtu
        self.hw_address = hw_address
        self.stats = LinkStatistics()
        self.max_batch = max_batch
        # Writes one frame and returns how many of its bytes the device took (a C
        # callable where the device allows it: try_send calls it once per frame).
        self._write: Callable[[bytes | bytearray | memoryview], int]
        # Only one task may wait for writability on an fd at a time (Trio raises
        # BusyResourceError otherwise), so concurrent senders queue here.
        self._write_lock = trio.Lock()

    def fileno(self) -> int:
        """The device's file descriptor (-1 once closed)."""
        return -1 if self._closed else self._fileno

    async def receive_batch(self) -> list[RxFrame]:
        while True:
            if self._closed:
                raise trio.ClosedResourceError(f"{self._kind} link is closed")
            # Cancel-safe: a cancellation can only hit this wait, before any read.
            await trio.lowlevel.wait_readable(self._waitable)
            frames = self._drain()
            if frames:
                return frames
            # Woken without a frame to hand over (another reader raced us, or the
            # device discarded all it read): wait again.

    def receive_ready(self) -> list[RxFrame]:
        if self._closed:
            raise trio.ClosedResourceError(f"{self._kind} link is closed")
        return self._drain()

    def _drain(self) -> list[RxFrame]:
        """Every frame ready now, up to ``max_batch``, counted in ``stats``."""
        frames: list[RxFrame] = []
        try:
            nbytes = self._read_frames(frames, self.max_batch)
        except OSError as exc:
            if not frames:
                raise self._broken(exc, reading=True) from exc
            # Hand over what we have; the error comes back on the next call. (The
            # loop's own byte count is lost with the exception, so count again.)
            nbytes = sum([len(data) for data, _ in frames])
        if frames:
            stats = self.stats
            stats.rx_frames += len(frames)
            stats.rx_bytes += nbytes
            stats.rx_batches += 1
        return frames

    @abc.abstractmethod
    def _read_frames(self, frames: list[RxFrame], limit: int) -> int:
        """Append the frames ready now (at most ``limit`` in all) to ``frames``.

        Returns the bytes appended. Ends quietly when the device has nothing more
        (EAGAIN); any other OSError propagates, with the frames read so far already
        in ``frames``. Frames the device discards are counted in ``stats.rx_dropped``.
        """

    @abc.abstractmethod
    def _broken(self, exc: OSError, *, reading: bool) -> trio.BrokenResourceError:
        """The error to raise for ``exc``, which means the device is unusable."""

    @abc.abstractmethod
    def _close_device(self) -> None:
        """Release the descriptor (after waiters have been woken)."""

    async def send_batch(self, frames: Sequence[bytes | bytearray | memoryview]) -> None:
        await send_when_writable(self, frames, self._waitable, self._write_lock)

    def try_send(self, frames: Sequence[bytes | bytearray | memoryview]) -> int:
        stats = self.stats
        write = self._write
        refused = self._frame_refused
        done = 0
        for frame in frames:
            if self._closed:
                raise trio.ClosedResourceError(f"{self._kind} link is closed")
            try:
                written = write(frame)
            except BlockingIOError:
                return done
            except OSError as exc:
                if exc.errno in refused:
                    stats.tx_dropped += 1
                    done += 1
                    continue
                raise self._broken(exc, reading=False) from exc
            stats.tx_frames += 1
            stats.tx_bytes += written
            done += 1
        return done

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            # Wake any task blocked in wait_readable/wait_writable with
            # ClosedResourceError before the number can be reused by another file.
            trio.lowlevel.notify_closing(self._waitable)
            self._close_device()
        await trio.lowlevel.checkpoint()
