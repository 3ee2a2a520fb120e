"""The shipped tools as a user runs them, against the kernel in a lab."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from trio_netstack.testing.lab import Lab

pytestmark = pytest.mark.system("ping", "tshark")


def tool(name: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"trio_netstack.tools.{name}", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def attach(lab: Lab) -> list[str]:
    return ["--tap", lab.stack_device, "--netns", lab.netns, "--ip", f"{lab.stack_ip}/24"]


LINE = re.compile(r"^64 bytes from 192\.0\.2\.1: icmp_seq=(\d+) ttl=64 time=\d+\.\d+ ms$")


def test_ping_tool_prints_iputils_lines(tap_lab: Lab, tmp_path: os.PathLike[str]) -> None:
    pcap = os.path.join(tmp_path, "ping.pcap")
    done = tool("ping", "-c", "3", "-i", "0.1", *attach(tap_lab), "--pcap", pcap, tap_lab.kernel_ip)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "PING 192.0.2.1 (192.0.2.1) 56(84) bytes of data."
    seqs = [int(m.group(1)) for m in map(LINE.match, lines) if m]
    assert seqs == [1, 2, 3], done.stdout
    assert "--- 192.0.2.1 ping statistics ---" in lines
    assert re.search(
        r"^3 packets transmitted, 3 received, 0% packet loss, time \d+ms$", done.stdout, re.M
    )
    assert re.search(r"^rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms$", done.stdout, re.M)
    # The capture is clean for Wireshark's dissectors, checksums verified.
    check = subprocess.run(
        [
            "tshark",
            "-r",
            pcap,
            "-o",
            "ip.check_checksum:TRUE",
            "-Y",
            "_ws.malformed || _ws.expert.severity >= warning || ip.checksum.status == 0 "
            "|| icmp.checksum.status == 0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "", check.stdout
    summary = subprocess.run(
        ["tshark", "-r", pcap, "-Y", "icmp"], capture_output=True, text=True, timeout=60, check=True
    )
    assert summary.stdout.count("Echo (ping) request") == 3
    assert summary.stdout.count("Echo (ping) reply") == 3


def test_ping_tool_exit_codes(tap_lab: Lab) -> None:
    # ARP gives up after three requests a second apart (as Linux does), so wait longer.
    nobody = tool("ping", "-c", "1", "-W", "5", *attach(tap_lab), "192.0.2.77")
    assert nobody.returncode == 1
    assert "From 192.0.2.2 icmp_seq=1 Destination Host Unreachable" in nobody.stdout
    assert "1 packets transmitted, 0 received, +1 errors, 100% packet loss" in nobody.stdout
    bad_ns = tool(
        "ping",
        "-c",
        "1",
        "--tap",
        "x0",
        "--netns",
        "tns-no-such-ns",
        "--ip",
        "192.0.2.2/24",
        "192.0.2.1",
    )
    assert bad_ns.returncode == 2
    assert len(bad_ns.stderr.strip().splitlines()) == 1, bad_ns.stderr
    assert "tns-no-such-ns" in bad_ns.stderr
    no_iface = tool(
        "ping",
        "-c",
        "1",
        "--iface",
        "tnsnosuch0",
        "--netns",
        tap_lab.netns,
        "--ip",
        "192.0.2.2/24",
        "192.0.2.1",
    )
    assert no_iface.returncode == 2
    assert no_iface.stderr.strip() == (
        f"ping: unknown interface 'tnsnosuch0' in namespace '{tap_lab.netns}'"
    ), no_iface.stderr
    in_use = tool("serve", *attach(tap_lab), "--udp-echo", "7", "--udp-echo", "7")
    assert in_use.returncode == 2
    assert in_use.stderr.strip() == "serve: address in use: UDP port *:7 is in use", in_use.stderr
    bad_flag = tool("ping", "-c", "0", *attach(tap_lab), "192.0.2.1")
    assert bad_flag.returncode == 2
    no_route = tool("ping", "-c", "1", *attach(tap_lab), "198.51.100.7")
    assert no_route.returncode == 2
    assert "no route to 198.51.100.7: no gateway configured" in no_route.stderr


def test_serve_answers_until_signalled(tap_lab: Lab) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_netstack.tools.serve", *attach(tap_lab)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # bounded: the process prints it at start or dies
        assert first.startswith("serving 192.0.2.2/24 on tnstap0"), first + proc.stderr.read()
        done = tap_lab.run(
            "ping", "-c", "5", "-i", "0.05", "-W", "2", tap_lab.stack_ip, check=False
        )
        assert done.returncode == 0, done.stdout
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped by signal" in out
    assert re.search(r"icmp: .*tx_echo_reply=5", out), out
