"""The descriptor-device base (FdLink) without root: TapLink over a datagram socket pair.

A datagram socket behaves like /dev/net/tun for what FdLink relies on: one read is
one frame, EAGAIN when empty, EAGAIN on write when the peer's queue is full.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from trio_netstack.link import RX_CSUM_TRUSTED, TapLink
from trio_netstack.link._fd import FdLink
from trio_netstack.link.base import RxFrame


def frame(n: int, size: int = 60) -> bytes:
    return b"\xff" * 6 + b"\x02\0\0\0\0\x01" + b"\x88\xb5" + n.to_bytes(4, "big") + bytes(size - 18)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    peer.setblocking(False)
    yield ours, peer
    peer.close()
    ours.close()


def tap_over(sock: socket.socket, *, max_batch: int = 64, offload: bool = False) -> TapLink:
    # dup: the link closes its descriptor, the fixture closes the socket's own.
    fd = socket.dup(sock.fileno())
    return TapLink(fd, "fake0", mtu=1500, max_batch=max_batch, offload=offload)


async def test_a_drain_takes_at_most_max_batch_and_counts(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    link = tap_over(ours, max_batch=3)
    for n in range(5):
        peer.send(frame(n))
    assert await link.receive_batch() == [(frame(n), 0) for n in range(3)]
    assert link.receive_ready() == [(frame(3), 0), (frame(4), 0)]
    assert link.receive_ready() == []
    assert link.stats.snapshot() == {
        "rx_frames": 5,
        "rx_bytes": 300,
        "tx_frames": 0,
        "tx_bytes": 0,
        "rx_dropped": 0,
        "tx_dropped": 0,
        "rx_batches": 2,
    }
    await link.aclose()


async def test_offload_strips_the_virtio_header_and_trusts_flagged_frames(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    link = tap_over(ours, offload=True)
    peer.send(b"\x01" + bytes(9) + frame(1))  # NEEDS_CSUM
    peer.send(bytes(10) + frame(2))
    peer.send(b"\x00" * 4)  # shorter than a virtio header: dropped
    assert link.receive_ready() == [(frame(1), RX_CSUM_TRUSTED), (frame(2), 0)]
    assert (link.stats.rx_bytes, link.stats.rx_dropped) == (120, 1)
    # What we write gets a header too; tx_bytes counts the frame only.
    assert link.try_send([frame(3)]) == 1
    assert peer.recv(2048) == bytes(10) + frame(3)
    assert link.stats.tx_bytes == 60
    await link.aclose()


async def test_try_send_stops_when_full_and_send_batch_waits_for_room(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    link = tap_over(ours)
    frames = [frame(n, 1000) for n in range(10_000)]
    taken = link.try_send(frames)
    assert 0 < taken < len(frames)  # the peer's queue filled up: stopped, no error
    assert (link.stats.tx_frames, link.stats.tx_bytes) == (taken, 1000 * taken)
    received: list[bytes] = []

    async def reader() -> None:
        # Bounded: every frame once, then stop.
        while len(received) < len(frames):
            await trio.lowlevel.wait_readable(peer)
            while len(received) < len(frames):
                try:
                    received.append(peer.recv(2048))
                except BlockingIOError:
                    break

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await link.send_batch(frames[taken:])
    assert received == frames
    await link.aclose()


async def test_a_refused_frame_is_counted_not_raised(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    link = tap_over(ours)
    huge = bytes(4 << 20)  # larger than any datagram the socket takes: EMSGSIZE
    assert link.try_send([frame(1), huge, frame(2)]) == 3
    assert (link.stats.tx_frames, link.stats.tx_dropped) == (2, 1)
    assert [peer.recv(2048), peer.recv(2048)] == [frame(1), frame(2)]
    await link.aclose()


async def test_close_wakes_a_blocked_receiver_and_is_idempotent(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _peer = pair
    link = tap_over(ours)
    assert link.fileno() >= 0
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def receiver() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await link.receive_batch()

            nursery.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            await link.aclose()
    await link.aclose()
    assert link.fileno() == -1
    with pytest.raises(trio.ClosedResourceError, match="TAP link is closed"):
        link.receive_ready()
    with pytest.raises(trio.ClosedResourceError):
        link.try_send([frame(1)])
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_batch()


class ScriptedLink(FdLink):
    """Reads come from a script: a frame, or an OSError to raise at that point."""

    _kind = "scripted"
    _frame_refused = frozenset({errno.EMSGSIZE})

    def __init__(self, sock: socket.socket, script: list[bytes | OSError]) -> None:
        super().__init__(
            sock, sock.fileno(), "s0", mtu=1500, hw_address=None, netns=None, max_batch=64
        )
        self.script = script
        self.writes: list[OSError | None] = []  # None: the write succeeds

        def write(data: bytes | bytearray | memoryview) -> int:
            step = self.writes.pop(0)
            if step is not None:
                raise step
            return len(data)

        self._write = write

    def _read_frames(self, frames: list[RxFrame], limit: int) -> int:
        nbytes = 0
        while self.script and len(frames) < limit:
            step = self.script.pop(0)
            if isinstance(step, OSError):
                raise step
            nbytes += len(step)
            frames.append((step, 0))
        return nbytes

    def _broken(self, exc: OSError, *, reading: bool) -> trio.BrokenResourceError:
        return trio.BrokenResourceError(f"{'read' if reading else 'write'} broke: {exc}")

    def _close_device(self) -> None:
        pass


async def test_an_error_after_some_frames_hands_them_over_then_raises(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _peer = pair
    eio = OSError(errno.EIO, "gone")
    link = ScriptedLink(ours, [frame(1), frame(2), eio, eio])
    assert link.receive_ready() == [(frame(1), 0), (frame(2), 0)]
    assert (link.stats.rx_frames, link.stats.rx_bytes, link.stats.rx_batches) == (2, 120, 1)
    with pytest.raises(trio.BrokenResourceError, match="read broke") as info:
        link.receive_ready()
    assert info.value.__cause__ is eio
    link.writes = [OSError(errno.EMSGSIZE, "big"), None, OSError(errno.ENODEV, "gone")]
    with pytest.raises(trio.BrokenResourceError, match="write broke"):
        link.try_send([frame(1), frame(2), frame(3)])
    assert (link.stats.tx_dropped, link.stats.tx_frames) == (1, 1)
    await link.aclose()
