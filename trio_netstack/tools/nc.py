"""``python -m trio_netstack.tools.nc``: netcat over the stack (netcat-openbsd-like).

``nc HOST PORT`` connects over TCP, copies standard input to the peer
(sending FIN when it ends) and the peer to standard output, and exits when the
peer has closed. ``nc -l PORT`` accepts one connection and does the same.
``nc -u HOST PORT`` sends each chunk of standard input as a datagram and
prints what comes back; ``nc -u -l PORT`` waits for the first datagram, takes
its sender as the peer, then does the same. ``-w SECONDS`` ends the program
after that long without traffic once standard input has ended (and bounds a
TCP connect).
"""

from __future__ import annotations

import argparse
import os
import sys

import trio

from .._runtime.stack import Stack
from .._runtime.tcp_api import TcpStream, connect_tcp, open_tcp_listeners
from .._runtime.udp import UdpSocket
from .._runtime.udp_api import open_udp_socket
from ._cli import attach_options, cancel_on_signals, run, stack_from_args

CHUNK = 65507


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trio_netstack.tools.nc", description=__doc__.split("\n")[0])
    p.add_argument("-u", dest="udp", action="store_true", help="UDP")
    p.add_argument("-l", dest="listen", action="store_true", help="listen for a peer")
    p.add_argument("-p", dest="source_port", type=int, default=0, metavar="PORT", help="local port")
    p.add_argument("-v", dest="verbose", action="store_true", help="say what happens on stderr")
    p.add_argument(
        "-w",
        dest="wait",
        type=float,
        metavar="SECONDS",
        help="quit after this long idle once stdin has ended",
    )
    p.add_argument("target", nargs="*", metavar="HOST PORT | PORT")
    attach_options(p)
    return p


async def read_stdin() -> bytes:
    return await trio.to_thread.run_sync(os.read, 0, CHUNK, abandon_on_cancel=True)


def write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


class Idle:
    """Tracks activity for -w: the deadline moves with every datagram."""

    def __init__(self, wait: float | None) -> None:
        self.wait = wait
        self.stdin_done = False
        self.scope = trio.CancelScope()

    def touch(self) -> None:
        if self.stdin_done and self.wait is not None:
            self.scope.deadline = trio.current_time() + self.wait


async def udp_session(sock: UdpSocket, idle: Idle, peer: tuple[str, int] | None) -> None:
    async def pump_in() -> None:
        while True:
            data = await sock.receive() if peer else (await sock.receive_from())[0]
            write_stdout(data)
            idle.touch()

    async def pump_out() -> None:
        while True:
            data = await read_stdin()
            if not data:
                idle.stdin_done = True
                idle.touch()
                return
            await sock.send(data)
            idle.touch()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump_in)
        nursery.start_soon(pump_out)


async def main_async(args: argparse.Namespace) -> int:
    idle = Idle(args.wait)
    async with stack_from_args(args) as stack:
        with idle.scope:
            async with cancel_on_signals(idle.scope):
                if args.udp:
                    await run_udp(stack, args, idle)
                else:
                    await run_tcp(stack, args, idle)
    return 0


async def tcp_session(stream: TcpStream, idle: Idle) -> None:
    """stdin -> peer (FIN at EOF), peer -> stdout; done when the peer has closed."""

    async def pump_out() -> None:
        while data := await read_stdin():
            await stream.send_all(data)
            idle.touch()
        await stream.send_eof()
        idle.stdin_done = True
        idle.touch()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump_out)
        while data := await stream.receive_some():
            write_stdout(data)
            idle.touch()
        nursery.cancel_scope.cancel()  # the peer closed: stop reading stdin


async def run_tcp(stack: Stack, args: argparse.Namespace, idle: Idle) -> None:
    if args.listen:
        [listener] = await open_tcp_listeners(int(args.target[0]), stack=stack)
        async with listener:
            if args.verbose:  # the wording of netcat-openbsd's -v
                host, port = listener.getsockname()
                print(f"Listening on {host} {port}", file=sys.stderr, flush=True)
            stream = await listener.accept()
        if args.verbose:
            host, port = stream.getpeername()
            print(f"Connection received on {host} {port}", file=sys.stderr, flush=True)
    else:
        host, port = args.target[0], int(args.target[1])
        with trio.fail_after(args.wait if args.wait is not None else 3600):
            stream = await connect_tcp(host, port, local_port=args.source_port, stack=stack)
        if args.verbose:
            print(
                f"Connection to {host} {port} port [tcp/*] succeeded!", file=sys.stderr, flush=True
            )
    async with stream:
        await tcp_session(stream, idle)


async def run_udp(stack: Stack, args: argparse.Namespace, idle: Idle) -> None:
    if args.listen:
        with open_udp_socket(local_port=int(args.target[0]), stack=stack) as sock:
            if args.verbose:  # the wording of netcat-openbsd's -v
                host, port = sock.getsockname()
                print(f"Bound on {host} {port}", file=sys.stderr, flush=True)
            data, peer = await sock.receive_from()
            if args.verbose:
                print(f"Connection received on {peer[0]} {peer[1]}", file=sys.stderr, flush=True)
            write_stdout(data)
            await sock.connect(peer)
            await udp_session(sock, idle, peer)
    else:
        host, port = args.target[0], int(args.target[1])
        with open_udp_socket(local_port=args.source_port, stack=stack) as sock:
            await sock.connect((host, port))
            await udp_session(sock, idle, (host, port))


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.listen and len(args.target) != 1:
        p.error("-l takes one PORT")
    if not args.listen and len(args.target) != 2:
        p.error("give HOST PORT")
    run("nc", lambda: main_async(args))


if __name__ == "__main__":
    main(sys.argv[1:])
