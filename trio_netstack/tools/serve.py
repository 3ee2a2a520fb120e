"""``python -m trio_netstack.tools.serve``: the stack as a host on the network.

It answers ARP and ping until SIGINT or SIGTERM, prints its address when it
starts and its counters when it stops. Services are added with flags as the
stack grows (UDP and TCP echo arrive with their issues).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable

import trio

from .._runtime.stack import Stack
from .._runtime.tcp_api import TcpListener, TcpStream, open_tcp_listeners
from .._runtime.udp import UdpSocket
from .._runtime.udp_api import open_udp_socket
from ._cli import attach_options, cancel_on_signals, run, stack_from_args


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trio_netstack.tools.serve", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--stats", action="store_true", help="print every counter on exit, not only drops"
    )
    p.add_argument(
        "--udp-echo",
        type=int,
        action="append",
        default=[],
        metavar="PORT",
        help="echo UDP datagrams on PORT back to their sender (repeatable)",
    )
    for flag, what in (("--tcp-echo", "echo TCP streams"), ("--tcp-discard", "discard TCP data")):
        p.add_argument(
            flag,
            type=int,
            action="append",
            default=[],
            metavar="PORT",
            help=f"{what} on PORT (repeatable)",
        )
    attach_options(p)
    return p


def format_statistics(stack: Stack, *, everything: bool) -> list[str]:
    """Counters grouped by layer; by default the traffic totals and the drops."""
    lines = []
    for layer, counts in stack.statistics().as_dict().items():
        shown = {k: v for k, v in counts.items() if v and (everything or _interesting(k))}
        if shown:
            lines.append(f"  {layer}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    return lines


def _interesting(name: str) -> bool:
    return not name.startswith(("rx_bytes", "tx_bytes", "rx_batches"))


async def udp_echo(sock: UdpSocket) -> None:
    """Seed 000's UDP echo: every datagram goes back to its sender unchanged."""
    while True:
        data, peer = await sock.receive_from()
        await sock.send_to(data, peer)


async def tcp_echo(stream: TcpStream) -> None:
    """Seed 000's TCP echo: bytes go back as they come; FIN answers FIN."""
    async with stream:
        try:
            while data := await stream.receive_some():
                await stream.send_all(data)
            await stream.send_eof()
        except trio.BrokenResourceError:
            pass  # the peer reset: nothing to do


async def tcp_discard(stream: TcpStream) -> None:
    """RFC 863: read everything, answer nothing."""
    async with stream:
        try:
            while await stream.receive_some():
                pass
        except trio.BrokenResourceError:
            pass


Handler = Callable[[TcpStream], Awaitable[None]]


async def main_async(args: argparse.Namespace) -> int:
    async with stack_from_args(args) as stack:
        device = args.tap or args.iface
        where = f" in netns {args.netns}" if args.netns else ""
        sockets = [open_udp_socket(local_port=port, stack=stack) for port in args.udp_echo]
        tcp: list[tuple[TcpListener, Handler]] = []
        for ports, service in ((args.tcp_echo, tcp_echo), (args.tcp_discard, tcp_discard)):
            for port in ports:
                tcp += [(lst, service) for lst in await open_tcp_listeners(port, stack=stack)]
        services = "".join(f", udp echo on {port}" for port in args.udp_echo)
        services += "".join(f", tcp echo on {port}" for port in args.tcp_echo)
        services += "".join(f", tcp discard on {port}" for port in args.tcp_discard)
        print(
            f"serving {', '.join(stack.addresses)} on {device}{where} "
            f"(mac {stack.mac_address}){services}; Ctrl-C to stop",
            flush=True,
        )
        with trio.CancelScope() as scope:
            async with cancel_on_signals(scope) as received, trio.open_nursery() as nursery:
                for sock in sockets:
                    nursery.start_soon(udp_echo, sock)
                for listener, handler in tcp:
                    nursery.start_soon(trio.serve_listeners, handler, [listener])
                await trio.sleep_forever()  # until a signal cancels the scope
        for sock in sockets:
            sock.close()
        print(f"stopped by signal {received[0] if received else '?'}; counters:")
        for line in format_statistics(stack, everything=args.stats):
            print(line)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    run("serve", lambda: main_async(args))


if __name__ == "__main__":
    main(sys.argv[1:])
