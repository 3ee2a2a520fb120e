"""Running the shipped tools as a user would, against a lab (shared by the tool tests)."""

from __future__ import annotations

import signal
import subprocess
import sys

from trio_netstack.testing.lab import Lab


def attach(lab: Lab) -> list[str]:
    """The attach options that put a tool's stack on the lab's TAP."""
    return ["--tap", lab.stack_device, "--netns", lab.netns, "--ip", f"{lab.stack_ip}/24"]


def start_tool(name: str, *argv: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", f"trio_netstack.tools.{name}", *argv],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def stop(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """SIGTERM a tool we started (by its Popen), then make sure it is gone."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
