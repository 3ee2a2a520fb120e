"""Helpers for testing TCP machines without a stack: two connections and a scripted wire.

The TCP machine (:class:`~trio_netstack.proto.tcp.connection.TcpConnection`) takes
explicit time, so two of them can be joined by a :class:`Wire` that moves their segments
and runs their timers when told, with losses chosen by the test. Addresses are held as the
pure core holds them (ints): A is 192.0.2.1 port 40000, B is 192.0.2.2 port 80 (the
addresses of :func:`trio_netstack.testing.open_stack_pair`).
"""

from __future__ import annotations

from ..proto.tcp.connection import ESTABLISHED, TcpConfig, TcpConnection
from ..proto.tcp.seq import Seq
from ..wire import tcp as wtcp

A_IP, B_IP = 0xC0000201, 0xC0000202
A_PORT, B_PORT = 40000, 80


def parse(segment: bytes, src: int, dst: int) -> wtcp.TcpSegment:
    """Parse (and verify) a segment one machine produced, sent from ``src`` to ``dst``."""
    return wtcp.parse_untrusted(segment, src, dst)


def make(
    config: TcpConfig | None = None, *, iss: int = 1000, side: str = "a", mss: int = 1460
) -> TcpConnection:
    """A closed connection on side ``"a"`` (towards B) or ``"b"`` (towards A)."""
    cfg = config or TcpConfig()
    if side == "a":
        return TcpConnection(cfg, (A_IP, A_PORT), (B_IP, B_PORT), Seq(iss), 0, mss, 0.0)
    return TcpConnection(cfg, (B_IP, B_PORT), (A_IP, A_PORT), Seq(iss), 5000, mss, 0.0)


class Wire:
    """Moves segments between two machines; can drop or hold them.

    Every segment moved is kept in :attr:`log` as ``("a>b" or "b>a", segment)``. While
    ``b_listens``, B plays a listener: the first bare SYN reaching it opens it passively
    (:meth:`TcpConnection.accept_syn`).
    """

    def __init__(self, a: TcpConnection, b: TcpConnection, *, b_listens: bool = True) -> None:
        self.a, self.b = a, b
        self.b_listens = b_listens  # b is opened passively by a's first SYN
        self.log: list[tuple[str, wtcp.TcpSegment]] = []

    def take(self, conn: TcpConnection) -> list[wtcp.TcpSegment]:
        """The segments ``conn`` produced, parsed (they leave the machine, not the log)."""
        src, dst = (A_IP, B_IP) if conn is self.a else (B_IP, A_IP)
        return [parse(s, src, dst) for s in conn.take_segments()]

    def run(self, now: float, rounds: int = 200, drop: set[int] | None = None) -> None:
        """Deliver until quiet; ``drop`` names indices (in log order) to lose."""
        for _ in range(rounds):
            moved = False
            for sender, receiver, name in ((self.a, self.b, "a>b"), (self.b, self.a, "b>a")):
                for seg in self.take(sender):
                    index = len(self.log)
                    self.log.append((name, seg))
                    moved = True
                    if drop and index in drop:
                        continue
                    if receiver is self.b and self.b_listens and seg.flags == wtcp.SYN:
                        self.b_listens = False
                        receiver.accept_syn(seg, now)  # what a listener does
                        continue
                    receiver.on_segment(seg, now)
            if not moved:
                return
        raise AssertionError("the two machines never went quiet")

    def advance(self, now: float) -> None:
        """Run the timers of both machines that are due at ``now``."""
        for conn in (self.a, self.b):
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)


def connected(
    config: TcpConfig | None = None, *, iss_a: int = 1000, iss_b: int = 90000
) -> tuple[TcpConnection, TcpConnection, Wire]:
    """A (active) and B (passive) after a three-way handshake at time 0, and their wire."""
    a = make(config, iss=iss_a, side="a")
    b = make(config, iss=iss_b, side="b")
    wire = Wire(a, b)
    a.connect(0.0)
    wire.run(0.0)
    if not (a.state == ESTABLISHED and b.state == ESTABLISHED):
        raise AssertionError(f"the handshake did not complete: {a.state}, {b.state}")
    return a, b, wire


def transfer(
    a: TcpConnection,
    b: TcpConnection,
    wire: Wire,
    data: bytes,
    start: float = 0.0,
    step: float = 0.01,
    limit: int = 100000,
) -> tuple[bytes, float]:
    """Send ``data`` from a to b, reading as it arrives; returns what b read and the time."""
    now = start
    sent = 0
    got = bytearray()
    for _ in range(limit):
        if sent < len(data):
            sent += a.app_send(memoryview(data)[sent:], now)
        wire.run(now)
        chunk = b.app_receive(1 << 20, now)
        if chunk:
            got += chunk
        wire.run(now)
        if len(got) == len(data):
            return bytes(got), now
        now += step
        wire.advance(now)
    raise AssertionError(f"transfer stalled at {len(got)}/{len(data)} bytes")


__all__ = ["A_IP", "A_PORT", "B_IP", "B_PORT", "Wire", "connected", "make", "parse", "transfer"]
