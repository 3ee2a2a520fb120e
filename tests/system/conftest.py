"""Fixtures for system tests: a fresh namespace lab per test, always deleted.

The ``system`` marker (tests/conftest.py) skips these tests off root before the
fixtures run; a test using a lab fixture without the marker fails loudly rather
than creating namespaces unannounced.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trio_netstack.testing.lab import Lab, create_lab


def _lab(request: pytest.FixtureRequest, kind: str) -> Iterator[Lab]:
    if request.node.get_closest_marker("system") is None:
        pytest.fail(f"a test using the {kind}_lab fixture must be marked @pytest.mark.system")
    lab = create_lab(kind)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def tap_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A namespace with a persistent TAP ``tnstap0`` carrying the kernel's 192.0.2.1/24."""
    yield from _lab(request, "tap")


@pytest.fixture
def veth_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A namespace with veth ``tnsveth-k`` (kernel, 192.0.2.1/24) <-> ``tnsveth-s`` (stack)."""
    yield from _lab(request, "veth")
