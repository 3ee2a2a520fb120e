"""in_netns argument checks that need no privileges (the rest is in tests/system)."""

from __future__ import annotations

import os

import pytest

from trio_netstack.link import LinkError, in_netns


def current_netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_none_stays_put() -> None:
    before = current_netns_inode()
    with in_netns(None):
        assert current_netns_inode() == before
    assert current_netns_inode() == before


def test_missing_namespace_is_a_clear_error() -> None:
    with (
        pytest.raises(
            LinkError,
            match=r"network namespace 'tns-no-such-ns' does not exist \(see `ip netns list`\)",
        ),
        in_netns("tns-no-such-ns"),
    ):
        pytest.fail("the block must not run")


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_names_cannot_escape_the_netns_directory(name: str) -> None:
    with pytest.raises(LinkError, match="invalid network namespace name"), in_netns(name):
        pytest.fail("the block must not run")
