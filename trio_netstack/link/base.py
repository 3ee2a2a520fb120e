"""The device interface every link (TAP, AF_PACKET, in-memory, wrappers) implements.

A link moves whole Ethernet II frames (no preamble, no FCS) between a device and
the stack. The receive side hands over *batches*: one wake-up drains every frame
the device has ready (bounded by ``max_batch``), because a Trio wake-up costs far
more than a read (see docs/design.md, "Performance").

Each received frame carries flags. ``RX_CSUM_TRUSTED`` says the device vouches
for the transport checksum (the frame was produced by the local kernel with
checksum offload, e.g. a veth peer's CHECKSUM_PARTIAL reported through
PACKET_AUXDATA); the TCP/UDP layers then skip verification, as Linux does for
CHECKSUM_PARTIAL/CHECKSUM_UNNECESSARY packets.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import attrs
import trio

#: The frame came from the local kernel with a checksum it has not filled in yet.
RX_CSUM_TRUSTED = 1

#: One received frame and its flags.
RxFrame = tuple[bytes, int]


class LinkError(OSError):
    """A device could not be opened or configured; the message says what to do."""


@attrs.define
class LinkStatistics:
    """Counters of one link; ``snapshot()`` gives a plain dict."""

    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    rx_dropped: int = 0  # frames the link itself discarded (queue full, short, own echo)
    tx_dropped: int = 0  # frames a write refused (device down, too long)
    rx_batches: int = 0

    def snapshot(self) -> dict[str, int]:
        return attrs.asdict(self)


@attrs.frozen
class DeviceCapabilities:
    """What a device does for the stack beyond moving frames, declared once per link.

    The stack reads these from the outermost link, so a wrapper (pcap, impairment)
    passes its inner link's on. The default is a plain Ethernet device: none of them.

    Attributes:
      tx_checksum_partial: the device completes the TCP/UDP checksum of what we send
        (Linux's CHECKSUM_PARTIAL): the stack may leave only the pseudo-header sum in
        the field and skip summing the payload.
      tso_max_payload: 0 when every frame sent must fit the MTU; else the device cuts
        TCP super-segments at its MTU (TSO) and this is the most TCP payload one may
        carry.
      rx_checksum_trusted: received frames may carry RX_CSUM_TRUSTED (the device
        vouches for their transport checksum). Informational: the per-frame flag is
        what the layers act on.
    """

    tx_checksum_partial: bool = False
    tso_max_payload: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    rx_checksum_trusted: bool = False


#: A device that does nothing beyond moving frames.
NO_CAPABILITIES = DeviceCapabilities()


class Link(abc.ABC):
    """Abstract Ethernet device.

    Attributes:
      name: a human readable name ("tap0", "veth1", "mem0").
      mtu: the largest IP packet the device carries (1500 on Ethernet).
      hw_address: the device's own MAC when it has one the stack should default to,
        else None (TAP: the kernel side owns its MAC; the stack picks its own).
      capabilities: what the device does for the stack (offloads); none by default.
    """

    name: str
    mtu: int
    hw_address: bytes | None
    stats: LinkStatistics
    capabilities: DeviceCapabilities = NO_CAPABILITIES

    @abc.abstractmethod
    async def receive_batch(self) -> list[RxFrame]:
        """Wait for at least one frame, then return every frame ready now (non-empty list).

        Cancel-safe: cancelling before it returns loses no frame.
        Raises trio.ClosedResourceError after aclose().
        """

    def receive_ready(self) -> list[RxFrame]:
        """Every frame ready now, without waiting (an empty list when none).

        The stack polls with it while frames keep arriving, once per scheduler pass,
        as Linux's NAPI polls a busy device instead of taking an interrupt per
        packet: a wait for readability costs two epoll_ctl calls in Trio. A link
        that cannot poll returns an empty list (the default) and the stack waits
        in :meth:`receive_batch`.
        """
        return []

    @abc.abstractmethod
    async def send_batch(self, frames: Sequence[bytes | bytearray | memoryview]) -> None:
        """Send the frames in order. Blocks only while the device is full (backpressure).

        A frame the device refuses (too long, device down) is counted in
        ``stats.tx_dropped`` and skipped; it never raises for one bad frame.
        """

    def try_send(self, frames: Sequence[bytes | bytearray | memoryview]) -> int:
        """Send frames from the first without waiting; return how many were handled.

        Stops at the first frame the device cannot take now (queue full); a frame it
        refuses outright counts as handled (``stats.tx_dropped``), as in
        :meth:`send_batch`. This is the transmit fast path: the stack calls it from the
        task that produced the frames, as Linux's ``dev_queue_xmit`` runs in the
        sender's context, and hands what is left to :meth:`send_batch` in its
        ethernet task. A link that cannot send synchronously returns 0 (the default).
        Raises trio.ClosedResourceError after aclose().
        """
        return 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background work of the link (e.g. releasing delayed frames), run by the stack.

        The default has none. The stack starts this in its nursery before using the link
        and cancels it on shutdown.
        """
        task_status.started()

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the device. Idempotent."""

    async def __aenter__(self) -> Link:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def send_when_writable(
    link: Link,
    frames: Sequence[bytes | bytearray | memoryview],
    waitable: Any,  # a file descriptor or a socket: what trio's wait_writable takes
    lock: trio.Lock,
) -> None:
    """``send_batch`` of a file-descriptor device: ``try_send``, waiting while it is full.

    No checkpoint when every write succeeds: the caller's own mailbox wait already
    yields, and a checkpoint per batch would double the cost of a small one. ``lock``
    keeps two waiting senders from sharing one readiness wait (Trio allows one).
    """
    done = 0
    while True:
        done += link.try_send(frames[done:] if done else frames)
        if done >= len(frames):
            return
        async with lock:
            await trio.lowlevel.wait_writable(waitable)
