"""Helpers of the TCP system tests: kernel-side peers, payload digests, lab commands.

Shared by tests/system/test_tcp_kernel.py and test_tcp_loss_kernel.py (a helper module,
so that no test module imports another).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import trio
from tcp_scripts import payload_chunks

import trio_netstack
from trio_netstack.testing.lab import Lab


def digest(total: int, seed: int) -> str:
    """The sha256 of ``payload_chunks(total, seed)``, computed independently of any transfer."""
    h = hashlib.sha256()
    for chunk in payload_chunks(total, seed):
        h.update(chunk)
    return h.hexdigest()


class Peer:
    """A kernel-side program in the lab whose stdout is read line by line."""

    def __init__(self, lab: Lab, script: str, *argv: str) -> None:
        self.proc = lab.popen(sys.executable, "-c", script, *argv, stdin=subprocess.PIPE)

    async def line(self, timeout: float = 30) -> list[str]:
        stdout = self.proc.stdout
        assert stdout is not None
        with trio.fail_after(timeout):
            raw = await trio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
        if not raw:
            raise AssertionError(f"the kernel peer exited early: {await self.stderr()}")
        return raw.decode().split()

    async def expect(self, word: str, timeout: float = 30) -> list[str]:
        words = await self.line(timeout)
        assert words and words[0] == word, (words, f"expected {word!r}")
        return words

    async def tell(self, *, confirmed: bool = True) -> None:
        """Answer a ``wait`` step (and wait for the peer to say it goes on)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        if confirmed:
            await self.expect("go")

    async def finish(self, timeout: float = 30) -> int:
        with trio.fail_after(timeout):
            return await trio.to_thread.run_sync(self.proc.wait, abandon_on_cancel=True)

    async def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return (await trio.to_thread.run_sync(self.proc.stderr.read)).decode(errors="replace")


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Poll a real condition, bounded in time and count."""
    interval = 0.01
    with trio.move_on_after(timeout):
        for _ in range(int(timeout / interval) + 1):
            if predicate():
                return
            await trio.sleep(interval)
    raise AssertionError(f"gave up after {timeout} s waiting for {what}")


async def kernel_counter(lab: Lab, name: str) -> int:
    """One of the namespace kernel's SNMP/netstat counters (they are per network namespace)."""
    out = await in_lab(lab, "nstat", "-asz", name)
    found = re.search(rf"^{name}\s+(\d+)", out, re.MULTILINE)
    assert found, out
    return int(found.group(1))


async def kernel_retransmits(lab: Lab) -> int:
    """The namespace kernel's TcpRetransSegs."""
    return await kernel_counter(lab, "TcpRetransSegs")


async def frames_towards_stack(lab: Lab) -> int:
    """Frames the lab's device handed to the stack's side (TAP: transmitted; veth: received)."""
    out = await in_lab(lab, "ip", "-s", "-j", "link", "show", "dev", lab.stack_device)
    stats = json.loads(out)[0]["stats64"]
    return int(stats["tx" if lab.kind == "tap" else "rx"]["packets"])


def tcp_counters(stack: trio_netstack.Stack) -> Counter[str]:
    """The stack's TCP counters and gauges; a counter never incremented reads 0."""
    return Counter(dict(stack.statistics().tcp))


async def send_payload(stream: trio_netstack.TcpStream, total: int, seed: int) -> str:
    h = hashlib.sha256()
    for chunk in payload_chunks(total, seed):
        h.update(chunk)
        await stream.send_all(chunk)
    return h.hexdigest()


async def receive_all(stream: trio_netstack.TcpStream) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    while data := await stream.receive_some():
        h.update(data)
        n += len(data)
    return n, h.hexdigest()


async def in_lab(lab: Lab, *argv: str, timeout: float = 30) -> str:
    result = await trio.to_thread.run_sync(
        lambda: lab.run(*argv, check=True, timeout=timeout), abandon_on_cancel=False
    )
    return result.stdout.decode()
