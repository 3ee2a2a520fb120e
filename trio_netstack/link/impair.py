"""Fault injection that wraps any link: loss, duplication, corruption, delay, reordering.

This kernel has no netem, and the in-memory link is perfect, so the stack's
recovery paths (retransmission, reassembly, duplicate ACKs, checksum drops) are
exercised by wrapping a link in :class:`ImpairedLink`.

Theory of operation
-------------------
Every frame crossing in an impaired direction goes through the same steps, each
with its own probability drawn from a ``random.Random`` seeded from
``Impairment.seed`` (one generator per direction, so the decisions for received
frames do not depend on how sends interleave with receives):

1. loss: the frame vanishes;
2. duplication: a second copy is made; each copy then goes through 3-4 on its own;
3. corruption: one random bit of one random byte after the 14-byte Ethernet
   header is flipped (the header is left alone so the frame still reaches the
   layer whose checksum should catch it); a corrupted frame loses
   RX_CSUM_TRUSTED, since no device would vouch for it;
4. delay: the frame is held for ``delay`` plus a uniform ``[-jitter, +jitter]``
   (never below zero); with probability ``reorder`` it is held an extra
   ``max(2 * delay, 1 ms)`` so frames sent after it overtake it.

Held frames sit in a heap ordered by (due time, arrival number), so frames with
equal delay keep their order. Time is Trio's clock, so tests under
``autojump_clock`` run instantly and exactly.

Received frames are released inside ``receive_batch``: it waits on the inner
link with a deadline at the earliest held frame (the inner receive is
cancel-safe, so nothing is lost when the deadline wins). Sent frames are
released by the ``run()`` background task, which the stack starts as it does for
every link; a send that has to hold a frame while ``run()`` is not running is a
programming error and raises RuntimeError.
"""

from __future__ import annotations

import heapq
import math
import random
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import attrs
import trio

from .base import RX_CSUM_TRUSTED, Link, RxFrame

__all__ = ["ImpairedLink", "Impairment"]

_ETH_HEADER = 14
_MIN_REORDER_DELAY = 0.001

#: Frames held (per direction) before further delayed frames are dropped instead.
DEFAULT_MAX_HELD = 10_000

Direction = Literal["both", "rx", "tx"]
_DIRECTIONS = ("both", "rx", "tx")


_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _probability(name: str) -> _Validator:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name} must be a probability between 0 and 1, not {value!r}")

    return check


def _duration(name: str) -> _Validator:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not (
            isinstance(value, int | float) and math.isfinite(value) and value >= 0
        ):
            raise ValueError(f"{name} must be a duration of zero or more seconds, not {value!r}")

    return check


def _check_direction(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(_DIRECTIONS)}, not {value!r}")


def _check_seed(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"seed must be an integer or None, not {value!r}")


# Divisors, not factors: 200 / 1e6 rounds to 0.0002, 200 * 1e-6 does not.
_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "µs": 1e6}
_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us|µs)?\s*$")


def _parse_duration(key: str, text: str) -> float:
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(
            f"bad value {text!r} for {key!r}: expected a duration such as 5ms, 200us, 0.005 or 1s"
        )
    return float(match.group(1)) / _UNITS[match.group(2) or "s"]


def _parse_probability(key: str, text: str) -> float:
    raw = text.strip()
    scale = 1.0
    if raw.endswith("%"):
        raw, scale = raw[:-1], 0.01
    try:
        value = float(raw) * scale
    except ValueError:
        raise ValueError(
            f"bad value {text!r} for {key!r}: expected a probability such as 0.02 or 2%"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"bad value {text!r} for {key!r}: a probability is between 0 and 1")
    return value


@attrs.frozen
class Impairment:
    """What to do to frames. Probabilities are per frame, durations in seconds."""

    loss: float = attrs.field(default=0.0, validator=_probability("loss"))
    dup: float = attrs.field(default=0.0, validator=_probability("dup"))
    reorder: float = attrs.field(default=0.0, validator=_probability("reorder"))
    corrupt: float = attrs.field(default=0.0, validator=_probability("corrupt"))
    delay: float = attrs.field(default=0.0, validator=_duration("delay"))
    jitter: float = attrs.field(default=0.0, validator=_duration("jitter"))
    seed: int | None = attrs.field(default=None, validator=_check_seed)
    direction: Direction = attrs.field(default="both", validator=_check_direction)

    @classmethod
    def parse(cls, text: str) -> Impairment:
        """Parse ``"loss=0.02,dup=0.01,reorder=0.02,delay=5ms,corrupt=0.001,seed=1"``.

        Every key is optional; also ``jitter=`` and ``direction=both|rx|tx``.
        Probabilities may be written as percentages ("2%"). A key given twice
        takes its last value, so ``f"{spec},seed={n}"`` overrides a seed in
        ``spec``. Raises ValueError
        naming the key for an unknown key or a bad value.
        """
        values: dict[str, Any] = {}
        for item in text.split(","):
            if not item.strip():
                continue
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"expected key=value in impairment spec, got {item.strip()!r}")
            if key in ("loss", "dup", "reorder", "corrupt"):
                values[key] = _parse_probability(key, raw)
            elif key in ("delay", "jitter"):
                values[key] = _parse_duration(key, raw)
            elif key == "seed":
                try:
                    values[key] = int(raw.strip(), 0)
                except ValueError:
                    raise ValueError(f"bad value {raw!r} for 'seed': expected an integer") from None
            elif key == "direction":
                if raw.strip() not in _DIRECTIONS:
                    raise ValueError(
                        f"bad value {raw!r} for 'direction': expected one of "
                        f"{', '.join(_DIRECTIONS)}"
                    )
                values[key] = raw.strip()
            else:
                raise ValueError(
                    f"unknown impairment key {key!r} (known: loss, dup, reorder, corrupt, "
                    "delay, jitter, seed, direction)"
                )
        return cls(**values)

    @property
    def holds_frames(self) -> bool:
        """True when some frames will be held back (delay, jitter or reordering)."""
        return self.delay > 0 or self.jitter > 0 or self.reorder > 0

    @property
    def is_noop(self) -> bool:
        return not (self.loss or self.dup or self.corrupt or self.holds_frames)


class _Direction:
    """The impairment machinery of one direction: its RNG and its held frames."""

    def __init__(
        self, imp: Impairment, rng: random.Random, counters: dict[str, int], max_held: int
    ) -> None:
        self.imp = imp
        self.rng = rng
        self.counters = counters
        self.max_held = max_held
        # (due, arrival number, frame, flags); the number keeps equal-due frames FIFO.
        self.held: list[tuple[float, int, bytes, int]] = []
        self._arrivals = 0

    def next_due(self) -> float:
        return self.held[0][0] if self.held else math.inf

    def process(self, frames: Sequence[RxFrame], now: float) -> list[RxFrame]:
        """Impair ``frames``; return those to pass on now, hold the rest."""
        imp = self.imp
        rng = self.rng
        counters = self.counters
        out: list[RxFrame] = []
        for frame, flags in frames:
            if imp.loss and rng.random() < imp.loss:
                counters["lost"] += 1
                continue
            copies = 1
            if imp.dup and rng.random() < imp.dup:
                counters["duplicated"] += 1
                copies = 2
            for _ in range(copies):
                data, fl = frame, flags
                if imp.corrupt and len(data) > _ETH_HEADER and rng.random() < imp.corrupt:
                    data, fl = self._corrupt(data), fl & ~RX_CSUM_TRUSTED
                    counters["corrupted"] += 1
                hold = imp.delay
                if imp.jitter:
                    hold = max(0.0, hold + rng.uniform(-imp.jitter, imp.jitter))
                if imp.reorder and rng.random() < imp.reorder:
                    hold += max(2 * imp.delay, _MIN_REORDER_DELAY)
                    counters["reordered"] += 1
                if hold <= 0:
                    out.append((data, fl))
                    continue
                if len(self.held) >= self.max_held:
                    counters["overflow"] += 1
                    continue
                counters["delayed"] += 1
                self._arrivals += 1
                heapq.heappush(self.held, (now + hold, self._arrivals, data, fl))
        return out

    def _corrupt(self, data: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(data)
        index = rng.randrange(_ETH_HEADER, len(buf))
        buf[index] ^= 1 << rng.randrange(8)
        return bytes(buf)

    def pop_due(self, now: float) -> list[RxFrame]:
        held = self.held
        out: list[RxFrame] = []
        while held and held[0][0] <= now:
            _, _, data, flags = heapq.heappop(held)
            out.append((data, flags))
        return out


class ImpairedLink(Link):
    """Wrap ``inner`` and impair the frames crossing it as ``impairment`` says.

    ``impair_stats`` counts what was done: lost, duplicated, corrupted, delayed,
    reordered, and overflow (a frame dropped because ``max_held`` frames were
    already held). ``stats`` and ``capabilities`` are the inner link's.
    """

    def __init__(
        self, inner: Link, impairment: Impairment, *, max_held: int = DEFAULT_MAX_HELD
    ) -> None:
        self.inner = inner
        self.impairment = impairment
        # A wrapper is the same device to the stack: same name, MTU, MAC and
        # counters (the very same LinkStatistics object, not a copy).
        self.name = inner.name
        self.mtu = inner.mtu
        self.hw_address = inner.hw_address
        self.stats = inner.stats
        # The faults happen on the way to and from the device, which still does its
        # offloads: a corrupted received frame loses RX_CSUM_TRUSTED, and loss and
        # corruption treat a super-segment as one frame of any size. (A device that
        # completes checksums sums what it is given, so there a corrupted sent TCP frame
        # leaves under a valid checksum: corrupt received frames to test checksum drops.)
        self.capabilities = inner.capabilities
        self.impair_stats: dict[str, int] = dict.fromkeys(
            ("lost", "duplicated", "corrupted", "delayed", "reordered", "overflow"), 0
        )
        seed = impairment.seed
        # One generator per direction, both derived from the one seed (string seeds
        # are hashed with SHA-512, so this is stable across runs and versions).
        rx_rng = random.Random(None if seed is None else f"{seed}:rx")
        tx_rng = random.Random(None if seed is None else f"{seed}:tx")
        active = not impairment.is_noop
        self._rx = (
            _Direction(impairment, rx_rng, self.impair_stats, max_held)
            if active and impairment.direction in ("both", "rx")
            else None
        )
        self._tx = (
            _Direction(impairment, tx_rng, self.impair_stats, max_held)
            if active and impairment.direction in ("both", "tx")
            else None
        )
        self._send_lock = trio.Lock()  # run() and send_batch() share inner.send_batch
        self._tx_wakeup = trio.Event()
        self._running = False
        self._closed = False

    @property
    def held_frames(self) -> int:
        """Frames currently held back (both directions)."""
        return sum(len(d.held) for d in (self._rx, self._tx) if d is not None)

    def __repr__(self) -> str:
        return f"<ImpairedLink {self.impairment!r} over {self.inner!r}>"

    async def receive_batch(self) -> list[RxFrame]:
        rx = self._rx
        if rx is None:
            return await self.inner.receive_batch()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("impaired link is closed")
            due = rx.next_due()
            now = trio.current_time()
            if due <= now:
                # Still a checkpoint (a caller looping on us must let others run);
                # nothing is taken before it, so a cancellation loses nothing.
                await trio.lowlevel.checkpoint()
                out = rx.pop_due(trio.current_time())
                if out:
                    return out
                continue
            incoming: list[RxFrame] | None = None
            with trio.move_on_at(due):
                incoming = await self.inner.receive_batch()
            now = trio.current_time()
            out = []
            if incoming is not None:
                passed = rx.process(incoming, now)
                # Held frames due by now left the wire before these arrived.
                out = rx.pop_due(now)
                out.extend(passed)
            else:
                out = rx.pop_due(now)
            if out:
                return out

    async def send_batch(self, frames: Sequence[bytes | bytearray | memoryview]) -> None:
        if self._closed:
            raise trio.ClosedResourceError("impaired link is closed")
        tx = self._tx
        if tx is None:
            await self.inner.send_batch(frames)
            return
        before = len(tx.held)
        earliest = tx.next_due()
        # bytes(): held frames must not change if the caller reuses its buffer.
        now = trio.current_time()
        out = tx.process([(bytes(f), 0) for f in frames], now)
        if len(tx.held) > before:
            if not self._running:
                # A stack always runs it; a test that forgot would otherwise see
                # delayed frames silently never leave. The frames stay held.
                raise RuntimeError(
                    "ImpairedLink needs its run() task for tx delay/reordering: "
                    "start it with nursery.start(link.run)"
                )
            if tx.next_due() < earliest:
                self._tx_wakeup.set()
        if out:
            async with self._send_lock:
                await self.inner.send_batch([data for data, _ in out])
        else:
            await trio.lowlevel.checkpoint()

    def try_send(self, frames: Sequence[bytes | bytearray | memoryview]) -> int:
        # Impaired sends (loss, delay, reordering) go through send_batch, which may
        # hold frames; an unimpaired direction passes straight through.
        if self._closed:
            raise trio.ClosedResourceError("impaired link is closed")
        if self._tx is None:
            return self.inner.try_send(frames)
        return 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the inner link's background work and release delayed sends on time."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.inner.run)
            if self._tx is None:
                task_status.started()
                return  # the nursery keeps waiting for inner.run()
            self._running = True
            try:
                task_status.started()
                await self._release_tx(self._tx)
            finally:
                self._running = False

    async def _release_tx(self, tx: _Direction) -> None:
        while True:
            due = tx.next_due()
            with trio.move_on_at(due):
                await self._tx_wakeup.wait()
            self._tx_wakeup = trio.Event()
            now = trio.current_time()
            ready = tx.pop_due(now)
            if ready and not self._closed:
                async with self._send_lock:
                    await self.inner.send_batch([data for data, _ in ready])

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            for d in (self._rx, self._tx):
                if d is not None:
                    d.held.clear()
        await self.inner.aclose()
