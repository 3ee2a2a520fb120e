"""Detect two tasks using one direction of a stream or socket at once.

Trio's own streams raise ``BusyResourceError`` when a second task sends (or
receives) while one already does; this is that pattern as one small object, in
place of a flag checked and reset by hand in every method.
"""

from __future__ import annotations

from types import TracebackType

import trio


class ConflictDetector:
    """``with detector:`` around a call; a second task entering meanwhile is refused."""

    __slots__ = ("_busy", "_message")

    def __init__(self, message: str) -> None:
        self._message = message
        self._busy = False

    @property
    def busy(self) -> bool:
        return self._busy

    def check(self) -> None:
        """Raise as entering would, without entering (a call that only peeks)."""
        if self._busy:
            raise trio.BusyResourceError(self._message)

    def __enter__(self) -> None:
        if self._busy:
            raise trio.BusyResourceError(self._message)
        self._busy = True

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._busy = False
