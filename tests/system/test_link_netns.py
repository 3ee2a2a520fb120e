"""in_netns: the thread enters and leaves; what it opened inside stays inside (needs root)."""

from __future__ import annotations

import errno
import os

import pytest
import trio

from trio_netstack.link import in_netns
from trio_netstack.link._netdev import control_socket, get_ifindex
from trio_netstack.testing.lab import Lab

pytestmark = pytest.mark.system()


def inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def netns_inode(lab: Lab) -> int:
    return os.stat(f"/var/run/netns/{lab.netns}").st_ino


def test_enters_and_returns(tap_lab: Lab) -> None:
    home = inode()
    assert home != netns_inode(tap_lab)
    with in_netns(tap_lab.netns):
        assert inode() == netns_inode(tap_lab)
        with in_netns(None):  # None nests as "stay"
            assert inode() == netns_inode(tap_lab)
    assert inode() == home


def test_returns_on_error(tap_lab: Lab) -> None:
    home = inode()
    with pytest.raises(KeyError), in_netns(tap_lab.netns):
        raise KeyError("boom")
    assert inode() == home


def test_sockets_opened_inside_stay_inside(tap_lab: Lab) -> None:
    with in_netns(tap_lab.netns):
        inside = control_socket()
    with inside:
        # Asked after we left, the socket still answers about the lab's devices.
        assert get_ifindex(inside, tap_lab.stack_device) > 0
    with control_socket() as outside, pytest.raises(OSError) as info:
        get_ifindex(outside, tap_lab.stack_device)
    assert info.value.errno == errno.ENODEV


async def test_only_the_calling_thread_moves(tap_lab: Lab) -> None:
    home = inode()

    def in_worker() -> tuple[int, int]:
        with in_netns(tap_lab.netns):
            return inode(), os.stat(f"/proc/self/task/{os.getpid()}/ns/net").st_ino

    worker_inode, main_thread_inode = await trio.to_thread.run_sync(in_worker)
    assert worker_inode == netns_inode(tap_lab)
    assert main_thread_inode == home  # the main thread never left
    assert inode() == home
