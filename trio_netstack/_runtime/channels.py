"""Batch-friendly channel helpers.

A channel hop that awaits costs ~15-20 us, one that does not ~1 us (DESIGN.md
section 5). Layer tasks therefore take everything queued in one wake-up and
checkpoint once per batch, never once per packet.
"""

from __future__ import annotations

import math
from typing import TypeVar

import trio

T = TypeVar("T")

MAX_MESSAGES_PER_WAKEUP = 64


async def receive_batch(
    channel: trio.MemoryReceiveChannel[T], deadline: float = math.inf
) -> list[T]:
    """Everything queued on ``channel`` (waiting for the first item until ``deadline``).

    Returns an empty list when the deadline passes first. Always checkpoints
    exactly once, so a busy layer still lets other tasks run.
    """
    try:
        first = channel.receive_nowait()
    except trio.WouldBlock:
        if deadline == math.inf:
            first = await channel.receive()
        else:
            with trio.move_on_at(deadline):
                first = await channel.receive()
                return _drain(channel, first)
            return []
    await trio.lowlevel.checkpoint()
    return _drain(channel, first)


def _drain(channel: trio.MemoryReceiveChannel[T], first: T) -> list[T]:
    items = [first]
    try:
        while len(items) < MAX_MESSAGES_PER_WAKEUP:
            items.append(channel.receive_nowait())
    except trio.WouldBlock:
        pass
    return items


def send_upward(channel: trio.MemorySendChannel[T], item: T) -> bool:
    """Upward delivery never blocks: a full queue drops (the caller counts it)."""
    try:
        channel.send_nowait(item)
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True
