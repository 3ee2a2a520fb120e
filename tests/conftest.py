"""Shared pytest configuration.

System tests (marked ``system``) need root, /dev/net/tun, iproute2 and the peer
tools they name. Off root they skip with the reason; under
``TRIO_NETSTACK_REQUIRE_SYSTEM=1`` (set by CI) a missing capability fails instead.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_SYSTEM = os.environ.get("TRIO_NETSTACK_REQUIRE_SYSTEM") == "1"


def system_missing(*tools: str) -> str | None:
    """Why a system test cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, TAP devices)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    for tool in ("ip", *tools):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command"
    return None


def require_system(*tools: str) -> None:
    """Skip (or fail under TRIO_NETSTACK_REQUIRE_SYSTEM=1) when the system test cannot run."""
    why = system_missing(*tools)
    if why is None:
        return
    if REQUIRE_SYSTEM:
        pytest.fail(f"system test cannot run: {why} (TRIO_NETSTACK_REQUIRE_SYSTEM=1)")
    pytest.skip(why)


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("system")
    if marker is not None:
        require_system(*marker.args)
