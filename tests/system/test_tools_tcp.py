"""serve --tcp-echo/--tcp-discard and nc over TCP, run as a user would, against the kernel's nc."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from toolrun import attach, start_tool, stop

from trio_netstack.testing.lab import Lab

pytestmark = pytest.mark.system("nc")


def kill(*procs: subprocess.Popen[bytes] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_stack_nc_sends_hello_to_kernel_nc_listener(tap_lab: Lab) -> None:
    """Seed 000: the stack's nc sends hello! to ``nc -l 8888``, which prints it."""
    listener = tap_lab.popen("nc", "-l", "8888")
    try:
        tap_lab.wait_listening(8888)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "trio_netstack.tools.nc",
                *attach(tap_lab),
                tap_lab.kernel_ip,
                "8888",
            ],
            input=b"hello!\n",
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out, err = listener.communicate(timeout=20)
        assert out == b"hello!\n", (out, err)
        assert listener.returncode == 0
    finally:
        kill(listener)


def test_serve_tcp_echo_and_discard_with_kernel_nc(tap_lab: Lab) -> None:
    """Seed 000: the kernel's nc gets its lines echoed by ``serve --tcp-echo 8888``."""
    proc = start_tool("serve", *attach(tap_lab), "--tcp-echo", "8888", "--tcp-discard", "9")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        assert "tcp echo on 8888, tcp discard on 9; Ctrl-C to stop" in first, first
        lines = b"".join(b"line %d of the seed 000 echo test\n" % i for i in range(100))
        # -N: shutdown(SHUT_WR) at the end of stdin; the echo then closes, nc exits.
        done = tap_lab.run(
            "nc", "-N", tap_lab.stack_ip, "8888", input=lines, check=False, timeout=30
        )
        assert (done.returncode, done.stdout) == (0, lines), done
        done = tap_lab.run("nc", "-N", tap_lab.stack_ip, "8888", input=b"hello!\n", check=False)
        assert (done.returncode, done.stdout) == (0, b"hello!\n"), done
        # The discard service reads everything and answers nothing.
        done = tap_lab.run(
            "nc", "-N", tap_lab.stack_ip, "9", input=bytes(range(256)) * 4096, check=False
        )
        assert (done.returncode, done.stdout) == (0, b""), done
    finally:
        out, err = stop(proc)
    assert proc.returncode == 0, err
    counters = out.decode()
    assert "stopped by signal" in counters and "tcp: " in counters, counters
    assert "syn_accepted=3" in counters, counters


def wait_kernel_tcp_state(lab: Lab, state: str, port: int) -> None:
    """Poll (bounded) until a kernel socket to the stack's ``port`` is in ``state``."""
    deadline = time.monotonic() + 10
    for _ in range(1000):
        out = lab.run("ss", "-Htn", "state", state, f"dport = :{port}", check=False).stdout
        if out.strip():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    states = lab.run("ss", "-Htan", f"dport = :{port}", check=False).stdout.decode()
    raise AssertionError(f"no kernel socket to port {port} reached {state}: {states}")


def start_stack_nc_listener(lab: Lab, port: int) -> subprocess.Popen[bytes]:
    proc = start_tool("nc", "-l", "-v", *attach(lab), str(port), stdin=subprocess.PIPE)
    assert proc.stderr is not None
    assert proc.stderr.readline() == f"Listening on 0.0.0.0 {port}\n".encode()
    return proc


def test_stack_nc_listener_with_kernel_nc(tap_lab: Lab) -> None:
    """``nc -l -v PORT`` on the stack: a kernel nc connects; lines go both ways.

    The stack's nc ends its side first (its stdin ends: FIN), then the kernel's.
    """
    proc = start_stack_nc_listener(tap_lab, 9000)
    kernel: subprocess.Popen[bytes] | None = None
    try:
        assert proc.stderr is not None and proc.stdin is not None and proc.stdout is not None
        kernel = tap_lab.popen(
            "nc", "-N", tap_lab.stack_ip, "9000", stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert kernel.stdin is not None and kernel.stdout is not None
        words = proc.stderr.readline().decode().split()
        assert words[:4] == ["Connection", "received", "on", tap_lab.kernel_ip], words
        assert 0 < int(words[4]) < 65536
        kernel.stdin.write(b"from linux\n")
        kernel.stdin.flush()
        assert proc.stdout.readline() == b"from linux\n"
        proc.stdin.write(b"from the stack\n")
        proc.stdin.close()
        assert kernel.stdout.readline() == b"from the stack\n"
        wait_kernel_tcp_state(tap_lab, "close-wait", 9000)  # the stack's FIN arrived
        kernel_out, _ = kernel.communicate(timeout=20)  # its stdin ends: -N sends FIN
        assert (kernel.returncode, kernel_out) == (0, b"")
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
        assert proc.stdout.read() == b""
    finally:
        kill(proc, kernel)


def test_stack_nc_listener_when_the_kernel_closes_first(tap_lab: Lab) -> None:
    """The kernel's ``nc -N`` sends and closes first; the stack's nc prints what came and
    exits (netcat exits when the peer has closed), and its FIN lets the kernel's nc exit.
    """
    proc = start_stack_nc_listener(tap_lab, 9000)
    kernel: subprocess.Popen[bytes] | None = None
    try:
        assert proc.stderr is not None and proc.stdout is not None
        kernel = tap_lab.popen(
            "nc", "-N", tap_lab.stack_ip, "9000", stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert kernel.stdin is not None and kernel.stdout is not None
        kernel.stdin.write(b"from linux\n")
        kernel.stdin.close()  # -N: FIN after the line
        # The stack's nc's own stdin stays open: it ends because the peer closed.
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
        assert proc.stdout.read() == b"from linux\n"
        try:
            kernel.wait(timeout=10)
        except subprocess.TimeoutExpired:
            states = tap_lab.run("ss", "-Htan", "dport = :9000", check=False).stdout.decode()
            raise AssertionError(
                f"the kernel's nc never saw the stack's FIN; its socket: {states.strip()}"
            ) from None
        kernel_out = kernel.stdout.read()
        assert (kernel.returncode, kernel_out) == (0, b"")
    finally:
        kill(proc, kernel)
