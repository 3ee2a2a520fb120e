"""``python -m trio_netstack.tools.ping HOST``: iputils-style ping from the stack.

Exit status as iputils: 0 when replies came, 1 when none did, 2 on a usage or
set-up error.
"""

from __future__ import annotations

import argparse
import math
import sys

import trio

from .._runtime.ping import Pinger, PingError, PingReply
from .._runtime.stack import Stack
from ._cli import attach_options, cancel_on_signals, run, stack_from_args


def format_ms(seconds: float) -> str:
    """RTT with the precision iputils uses (3 significant digits, ms)."""
    ms = seconds * 1000.0
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trio_netstack.tools.ping", description=__doc__.split("\n")[0])
    p.add_argument("host")
    p.add_argument("-c", dest="count", type=int, metavar="COUNT", help="stop after COUNT replies")
    p.add_argument("-i", dest="interval", type=float, default=1.0, metavar="SECONDS")
    p.add_argument("-s", dest="size", type=int, default=56, metavar="BYTES", help="payload size")
    p.add_argument(
        "-W",
        dest="timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time to wait for a reply after the last request",
    )
    p.add_argument("-t", dest="ttl", type=int, metavar="TTL")
    p.add_argument("-q", dest="quiet", action="store_true", help="only the summary")
    attach_options(p)
    return p


class Session:
    def __init__(self, args: argparse.Namespace, out: list[str] | None = None) -> None:
        self.args = args
        self.rtts: list[float] = []
        self.seen: set[int] = set()
        self.errors = 0
        self.sent = 0
        self.out = out

    def say(self, line: str) -> None:
        if self.out is not None:
            self.out.append(line)
        else:
            print(line, flush=True)

    def on_event(self, event: PingReply | PingError) -> None:
        if isinstance(event, PingReply):
            dup = event.seq in self.seen
            self.seen.add(event.seq)
            if not dup:
                self.rtts.append(event.rtt)
            if not self.args.quiet:
                self.say(
                    f"{event.size + 8} bytes from {event.address}: icmp_seq={event.seq} "
                    f"ttl={event.ttl} time={format_ms(event.rtt)} ms" + (" (DUP!)" if dup else "")
                )
        else:
            self.errors += 1
            if not self.args.quiet:
                self.say(f"From {event.address} icmp_seq={event.seq} {event.description}")

    def summary(self, host: str, elapsed: float) -> None:
        received = len(self.rtts)
        loss = 0 if self.sent == 0 else round(100 * (self.sent - received) / self.sent)
        errors = f", +{self.errors} errors" if self.errors else ""
        self.say(f"\n--- {host} ping statistics ---")
        self.say(
            f"{self.sent} packets transmitted, {received} received{errors}, "
            f"{loss}% packet loss, time {elapsed * 1000:.0f}ms"
        )
        if self.rtts:
            mean = sum(self.rtts) / len(self.rtts)
            mdev = math.sqrt(max(0.0, sum(r * r for r in self.rtts) / len(self.rtts) - mean**2))
            self.say(
                "rtt min/avg/max/mdev = "
                + "/".join(f"{x * 1000:.3f}" for x in (min(self.rtts), mean, max(self.rtts), mdev))
                + " ms"
            )


async def ping_loop(stack: Stack, args: argparse.Namespace, session: Session) -> None:
    async with Pinger(args.host, size=args.size, ttl=args.ttl, stack=stack) as pinger:
        session.say(f"PING {args.host} ({args.host}) {args.size}({args.size + 28}) bytes of data.")
        start = trio.current_time()
        seq = 0
        next_send = start
        last_deadline = math.inf
        while True:
            now = trio.current_time()
            if args.count is None or seq < args.count:
                if now >= next_send:
                    seq += 1
                    await pinger.send(seq)
                    session.sent += 1
                    next_send += args.interval
                    if args.count is not None and seq == args.count:
                        last_deadline = trio.current_time() + args.timeout
                deadline = min(next_send, last_deadline)
            else:
                deadline = last_deadline
            if (
                args.count is not None
                and seq == args.count
                and (len(session.seen) + session.errors >= args.count)
            ):
                break
            event = await pinger.receive(deadline)
            if event is not None:
                session.on_event(event)
            elif trio.current_time() >= last_deadline:
                break


async def main_async(args: argparse.Namespace) -> int:
    session = Session(args)
    async with stack_from_args(args) as stack:
        start = trio.current_time()
        with trio.CancelScope() as scope:
            async with cancel_on_signals(scope):
                await ping_loop(stack, args, session)
        session.summary(args.host, trio.current_time() - start)
    return 0 if session.rtts else 1


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.count is not None and args.count < 1:
        parser().error("-c must be at least 1")
    if args.interval < 0.002:
        parser().error("-i below 0.002 s is not allowed (as in iputils)")
    run("ping", lambda: main_async(args))


if __name__ == "__main__":
    main(sys.argv[1:])
