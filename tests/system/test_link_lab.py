"""The namespace lab itself: layout, isolation from the host, cleanup (needs root)."""

from __future__ import annotations

import os
import subprocess

import pytest

from trio_netstack.link.netns import netns_exists
from trio_netstack.testing.lab import Lab, LabCommandError, LabError, create_lab

pytestmark = pytest.mark.system()


def host_state() -> tuple[str, str, str]:
    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, check=True).stdout.decode()

    return run("ip", "link"), run("ip", "addr"), run("ip", "route")


@pytest.mark.parametrize("kind", ["tap", "veth"])
def test_layout(kind: str, request: pytest.FixtureRequest) -> None:
    lab: Lab = request.getfixturevalue(f"{kind}_lab")
    assert netns_exists(lab.netns) and lab.netns.startswith("tns-")
    addrs = lab.run("ip", "-4", "-o", "addr", "show").stdout.decode()
    assert f"{lab.kernel_device}    inet 192.0.2.1/24" in addrs
    assert "192.0.2.2" not in addrs  # the stack's address belongs to nobody in the kernel
    assert lab.run("ip", "-6", "addr", "show").stdout.decode().strip() == ""
    for scope in ("all", "default"):
        value = lab.run("cat", f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6").stdout
        assert value.strip() == b"1"
    links = lab.run("ip", "-o", "link", "show").stdout.decode()
    assert lab.stack_device in links and lab.kernel_device in links
    if kind == "veth":
        features = lab.run("ethtool", "-k", lab.kernel_device).stdout.decode()
        assert "tcp-segmentation-offload: off" in features
        assert "generic-segmentation-offload: off" in features
        assert "tx-checksumming: on" in features
    else:
        assert (
            "tun type tap" in lab.run("ip", "-d", "link", "show", lab.stack_device).stdout.decode()
        )


def test_close_removes_everything_and_leaves_the_host_alone() -> None:
    before = host_state()
    lab = create_lab("veth", mtu=1400)
    assert "mtu 1400" in lab.run("ip", "link", "show", "tnsveth-s").stdout.decode()
    sleeper = lab.popen("sleep", "600")
    assert host_state() == before  # nothing of the lab shows outside its namespace
    lab.close()
    assert sleeper.wait(timeout=10) != 0  # killed by the lab
    assert not netns_exists(lab.netns)
    assert host_state() == before
    lab.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        lab.run("true")


def test_run_reports_failures_with_stderr() -> None:
    with create_lab("tap") as lab:
        with pytest.raises(LabCommandError, match=r"stderr: .*nosuch0"):
            lab.run("ip", "link", "show", "nosuch0")
        assert lab.run("false", check=False).returncode == 1
        assert lab.run("cat", input=b"piped").stdout == b"piped"
    assert not netns_exists(lab.netns)


def test_failed_setup_cleans_up() -> None:
    def my_namespaces() -> list[str]:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, check=True)
        return [n for n in listed.stdout.decode().split() if n.startswith(f"tns-{os.getpid()}-")]

    assert my_namespaces() == []
    with pytest.raises(LabError, match="addr add"):
        create_lab("tap", kernel_ip="192.0.2.300")
    assert my_namespaces() == []
    with pytest.raises(ValueError, match="kind"):
        create_lab("bridge")
