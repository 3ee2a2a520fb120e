"""serve --udp-echo and nc -u, run as a user would, against the kernel's nc."""

from __future__ import annotations

import subprocess
import sys

import pytest
from toolrun import attach, start_tool, stop

from trio_netstack.testing.lab import Lab

pytestmark = pytest.mark.system("nc")


def test_serve_udp_echo_with_kernel_nc(tap_lab: Lab) -> None:
    proc = start_tool("serve", *attach(tap_lab), "--udp-echo", "8888", "--udp-echo", "7")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        assert "udp echo on 8888, udp echo on 7" in first, first
        for port in ("8888", "7"):
            done = tap_lab.run(
                "nc", "-u", "-w1", tap_lab.stack_ip, port, input=b"hello!\n", check=False
            )
            assert done.stdout == b"hello!\n", done
    finally:
        out, err = stop(proc)
    assert proc.returncode == 0, err
    assert b"udp: " in out


def test_stack_nc_to_kernel_nc_listener(tap_lab: Lab) -> None:
    listener = tap_lab.popen("nc", "-u", "-l", "-W", "1", "8888", stdout=subprocess.PIPE)
    try:
        tap_lab.wait_listening(8888, udp=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "trio_netstack.tools.nc",
                "-u",
                "-w",
                "1",
                *attach(tap_lab),
                tap_lab.kernel_ip,
                "8888",
            ],
            input=b"hello!",
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out, _ = listener.communicate(timeout=20)
        assert out == b"hello!"
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(timeout=10)


def test_stack_nc_listener_answers_kernel(tap_lab: Lab) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_netstack.tools.nc",
            "-u",
            "-l",
            "-v",
            "-w",
            "2",
            *attach(tap_lab),
            "9000",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    kernel: subprocess.Popen[bytes] | None = None
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline() == b"Bound on 0.0.0.0 9000\n"
        # The kernel's nc sends a line and prints what the stack's nc sends back.
        kernel = tap_lab.popen(
            "nc",
            "-u",
            "-w",
            "3",
            tap_lab.stack_ip,
            "9000",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert kernel.stdin is not None and proc.stdin is not None and proc.stdout is not None
        kernel.stdin.write(b"from linux\n")
        kernel.stdin.flush()
        assert proc.stdout.readline() == b"from linux\n"
        proc.stdin.write(b"from the stack\n")
        proc.stdin.close()
        kernel_out, _ = kernel.communicate(timeout=20)
        assert kernel_out == b"from the stack\n"
        proc.wait(timeout=20)
        assert proc.returncode == 0
    finally:
        for p in (proc, kernel):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
