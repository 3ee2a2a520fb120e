"""``python -m trio_netstack.tools.demo``: a self-contained tour of the stack.

As root it builds a lab (a network namespace holding a TAP device; the Linux
kernel at 192.0.2.1/24 on one side, the stack at 192.0.2.2/24 on the other),
has the kernel ping the stack and the stack ping the kernel, shows what
happened, and removes the lab. Off root it runs two stacks on an in-memory link
so that anyone can watch it work.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import trio

from .._runtime.ping import ping
from .._runtime.stack import Stack, open_stack
from .._runtime.tcp_api import open_tcp_stream, serve_tcp
from .._runtime.udp_api import open_udp_socket
from ..testing import open_stack_pair
from ..testing.lab import create_lab
from ..wire.addr import ip_to_str, mac_to_str
from ._cli import run
from .serve import format_statistics, tcp_echo, udp_echo

if TYPE_CHECKING:
    from ..testing.lab import Lab


def show_neighbours(stack: Stack) -> None:
    for n in stack.neighbours():
        mac = mac_to_str(n.mac) if n.mac else "(incomplete)"
        print(f"    {ip_to_str(n.ip)} is-at {mac} [{n.state}]")


async def show_services(lab: Lab) -> bool:
    """Seed 000's UDP and TCP scenarios, the kernel's nc against the stack and back."""
    async with trio.open_nursery() as nursery:
        udp = open_udp_socket(local_port=8888)
        nursery.start_soon(udp_echo, udp)
        await nursery.start(serve_tcp, tcp_echo, 8888)
        print("\n== UDP echo on the stack: echo hello! | nc -u -w1 192.0.2.2 8888")
        udp_run = await trio.to_thread.run_sync(
            lambda: lab.run("nc", "-u", "-w1", lab.stack_ip, "8888", input=b"hello!\n", check=False)
        )
        print(f"   | {udp_run.stdout.decode().strip()}")
        print("== TCP echo on the stack: printf 'echo!\\n' | nc -N 192.0.2.2 8888")
        tcp_run = await trio.to_thread.run_sync(
            lambda: lab.run("nc", "-N", "-w2", lab.stack_ip, "8888", input=b"echo!\n", check=False)
        )
        print(f"   | {tcp_run.stdout.decode().strip()}")
        print("== the stack's TCP client to the kernel's nc -l 9999: sends hello!")
        listener = lab.popen("nc", "-l", "-W", "1", "9999", stdout=subprocess.PIPE)
        try:
            got = b""
            await trio.to_thread.run_sync(lab.wait_listening, 9999)
            with trio.fail_after(10):
                async with open_tcp_stream(lab.kernel_ip, 9999) as stream:
                    await stream.send_all(b"hello!")
                    await stream.send_eof()
                    while await stream.receive_some():
                        pass
                got, _ = await trio.to_thread.run_sync(lambda: listener.communicate(timeout=5))
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.wait(timeout=5)
        print(f"   | kernel nc printed: {got.decode()}")
        nursery.cancel_scope.cancel()
    udp.close()
    return udp_run.stdout == b"hello!\n" and tcp_run.stdout == b"echo!\n" and got == b"hello!"


async def kernel_lab(count: int) -> int:
    print("== building the lab: netns with a TAP device; kernel 192.0.2.1/24, stack 192.0.2.2/24")
    with create_lab("tap") as lab:
        link = await lab.open_stack_link()
        async with open_stack(link, ip=f"{lab.stack_ip}/{lab.prefix_len}") as stack:
            print(f"   netns {lab.netns}, device {lab.stack_device}, stack mac {stack.mac_address}")
            print(f"\n== the kernel pings the stack: ping -c {count} -i 0.2 {lab.stack_ip}")
            result = await trio.to_thread.run_sync(
                lambda: lab.run(
                    "ping", "-c", str(count), "-i", "0.2", "-W", "2", lab.stack_ip, check=False
                )
            )
            for line in result.stdout.decode().splitlines():
                print(f"   | {line}")
            kernel_ok = result.returncode == 0
            print(f"\n== the stack pings the kernel: {count} echo requests to {lab.kernel_ip}")
            answer = await ping(lab.kernel_ip, count=count, interval=0.2, timeout=2.0)
            for r in answer.replies:
                print(
                    f"   | {r.size + 8} bytes from {r.address}: icmp_seq={r.seq} ttl={r.ttl} "
                    f"time={r.rtt * 1000:.3f} ms"
                )
            print(f"   {answer.transmitted} sent, {answer.received} received")
            services_ok = await show_services(lab)
            neigh = await trio.to_thread.run_sync(
                lambda: lab.run("ip", "neigh", "show", "dev", lab.kernel_device, check=False)
            )
            print("\n== the kernel's ARP table (learnt from the stack):")
            for line in neigh.stdout.decode().splitlines():
                print(f"    {line}")
            print("== the stack's ARP table:")
            show_neighbours(stack)
            print("\n== the stack's counters:")
            for line in format_statistics(stack, everything=False):
                print(line)
    print(f"\n== lab removed ({lab.netns})")
    ok = kernel_ok and answer.received == count and services_ok
    print("RESULT: " + ("ok, everything answered" if ok else "FAILED, see above"))
    return 0 if ok else 1


async def memory_demo(count: int) -> int:
    print("== not root: two stacks on an in-memory link (A 192.0.2.1, B 192.0.2.2)")
    async with open_stack_pair() as (a, b):
        answer = await ping("192.0.2.2", count=count, interval=0.2, stack=a)
        for r in answer.replies:
            print(
                f"   | A: {r.size + 8} bytes from {r.address}: icmp_seq={r.seq} "
                f"time={r.rtt * 1000:.3f} ms"
            )
        back = await ping("192.0.2.1", count=count, interval=0.2, stack=b)
        print(f"   A->B {answer.received}/{count} replies, B->A {back.received}/{count} replies")
        print("== A's ARP table:")
        show_neighbours(a)
    ok = answer.received == count and back.received == count
    print("RESULT: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="trio_netstack.tools.demo", description=__doc__.split("\n")[0])
    p.add_argument("-c", dest="count", type=int, default=5, help="pings each way")
    p.add_argument("--memory", action="store_true", help="in-memory demo even as root")
    args = p.parse_args(argv)
    use_kernel = os.geteuid() == 0 and not args.memory and os.path.exists("/dev/net/tun")
    run("demo", lambda: kernel_lab(args.count) if use_kernel else memory_demo(args.count))


if __name__ == "__main__":
    main(sys.argv[1:])
