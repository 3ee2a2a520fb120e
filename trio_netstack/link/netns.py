"""Entering a named network namespace for the duration of a ``with`` block.

Devices are bound to the network namespace of the thread that opens them: a TAP
file records the namespace at ``open("/dev/net/tun")``, a socket at ``socket()``.
So to own a device inside a namespace the process does not have to live there: it
steps in, opens the device, and steps back out. The device stays in the
namespace; everything else the process does stays in its own.

``setns(2)`` changes the namespace of the calling *thread* only. Python 3.11 has
no ``os.setns``, so it is called through ctypes. pyroute2's ``pushns``/``popns``
keep their saved descriptors on a process-wide stack, which is wrong as soon as
two threads use it; here the saved descriptor lives in the ``with`` frame.

Warning: never ``await`` inside ``with in_netns(...)``. While the block is
active the whole Trio thread is in the other namespace, so any task that runs
during an await would open its sockets there.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from .base import LinkError

__all__ = ["NETNS_RUN_DIR", "in_netns", "netns_exists"]

#: Where ``ip netns add`` bind-mounts named namespaces.
NETNS_RUN_DIR = "/var/run/netns"

_CLONE_NEWNET = 0x40000000

_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    # Loaded lazily: importing the link package must not need a libc with setns.
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _netns_path(name: str) -> str:
    # A name with a slash would let a caller point setns at any file.
    if not name or "/" in name or name in (".", ".."):
        raise LinkError(f"invalid network namespace name {name!r}")
    return os.path.join(NETNS_RUN_DIR, name)


def netns_exists(name: str) -> bool:
    """True when ``ip netns list`` would show ``name``."""
    return os.path.exists(_netns_path(name))


@contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block with the calling thread in network namespace ``name``.

    ``None`` means "stay where you are" so callers can pass an optional option
    straight through. Returns to the original namespace afterwards, also when the
    block raises. Raises LinkError when the namespace does not exist or cannot be
    entered.
    """
    if name is None:
        yield
        return
    path = _netns_path(name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LinkError(
            f"network namespace {name!r} does not exist (see `ip netns list`)"
        ) from None
    except PermissionError as exc:
        raise LinkError(f"entering network namespace {name!r} needs root (CAP_SYS_ADMIN)") from exc
    try:
        # thread-self, not self: /proc/self/ns/net is the main thread's namespace,
        # and the caller may be a worker thread that is somewhere else.
        saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(target)
        raise
    try:
        try:
            _setns(target)
        except OSError as exc:
            if exc.errno == errno.EPERM:
                raise LinkError(
                    f"entering network namespace {name!r} needs root (CAP_SYS_ADMIN)"
                ) from exc
            if exc.errno == errno.EINVAL:
                raise LinkError(f"{path} is not a network namespace (see `ip netns list`)") from exc
            raise LinkError(f"cannot enter network namespace {name!r}: {exc.strerror}") from exc
        try:
            yield
        finally:
            try:
                _setns(saved)
            except OSError as exc:  # pragma: no cover - would need a kernel bug
                # Carrying on in the wrong namespace would silently open every
                # later device in the wrong place; stop loudly instead.
                raise RuntimeError(
                    f"cannot return to the original network namespace: {exc}"
                ) from exc
    finally:
        os.close(saved)
        os.close(target)
