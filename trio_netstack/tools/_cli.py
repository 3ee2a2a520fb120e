"""What every tool shares: how to attach a stack, and how to fail with one clear line."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from .._runtime.stack import Stack, open_stack
from ..link.base import LinkError

EXIT_USAGE = 2


def attach_options(parser: argparse.ArgumentParser, *, need_ip: bool = True) -> None:
    """The options that say how the stack attaches to a network."""
    group = parser.add_argument_group("attaching the stack")
    dev = group.add_mutually_exclusive_group(required=True)
    dev.add_argument("--tap", metavar="NAME", help="TAP device (attached, or created if absent)")
    dev.add_argument("--iface", metavar="NAME", help="Ethernet interface driven via AF_PACKET")
    group.add_argument("--netns", metavar="NAME", help="open the device in this network namespace")
    group.add_argument(
        "--ip",
        metavar="A.B.C.D/P",
        required=need_ip,
        help="the stack's address and prefix, e.g. 192.0.2.2/24",
    )
    group.add_argument("--gateway", metavar="A.B.C.D", help="default router")
    group.add_argument("--mac", metavar="MAC", help="the stack's MAC (default: random, local)")
    group.add_argument("--mtu", type=int, metavar="BYTES", help="IP MTU (default: the device's)")
    group.add_argument("--pcap", metavar="FILE", help="record every frame to a pcap file")
    group.add_argument(
        "--offload",
        action="store_true",
        help="TAP checksum/TSO offload: the kernel sends large TCP segments",
    )
    group.add_argument(
        "--impair",
        metavar="SPEC",
        help="inject faults: loss=0.02,dup=0.01,reorder=0.02,delay=5ms,corrupt=0.001,seed=N",
    )


@asynccontextmanager
async def stack_from_args(args: argparse.Namespace) -> AsyncIterator[Stack]:
    async with open_stack(
        tap=args.tap,
        iface=args.iface,
        netns=args.netns,
        ip=args.ip,
        gateway=args.gateway,
        mac=args.mac,
        mtu=args.mtu,
        pcap=args.pcap,
        impair=args.impair,
        offload=args.offload,
    ) as stack:
        yield stack


def describe_error(exc: BaseException) -> str | None:
    """One line for errors a user can cause; None for bugs (those keep their traceback)."""
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return describe_error(exc.exceptions[0])
    if isinstance(exc, LinkError | ValueError):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"{exc.strerror or exc}: run as root (CAP_NET_ADMIN, CAP_NET_RAW)"
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRINUSE:
            return f"address in use: {exc.strerror or exc}"
        return exc.strerror if exc.strerror and exc.args[1:] else str(exc)
    return None


def run(prog: str, main: Callable[[], Awaitable[int]]) -> None:
    """Run ``main`` under Trio; exit with its code, or 2 with one line on a user error."""
    try:
        code = trio.run(main)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:
        message = describe_error(exc)
        if message is None:
            raise
        print(f"{prog}: {message}", file=sys.stderr)
        code = EXIT_USAGE
    sys.exit(code)


@asynccontextmanager
async def cancel_on_signals(
    scope: trio.CancelScope, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
) -> AsyncIterator[list[int]]:
    """Cancel ``scope`` when one of ``signals`` arrives; the list records which arrived."""
    received: list[int] = []

    async def watch(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(*signals) as receiver:
            task_status.started()
            async for signum in receiver:
                received.append(signum)
                scope.cancel()
                return

    async with trio.open_nursery() as nursery:
        await nursery.start(watch)
        try:
            yield received
        finally:
            nursery.cancel_scope.cancel()
