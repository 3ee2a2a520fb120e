"""TCP between two stacks on an in-memory link under the mock clock."""

from __future__ import annotations

import hashlib
import random
import ssl

import pytest
import trio
import trio.testing
import trustme

import trio_netstack
from trio_netstack.testing import open_stack_pair


async def echo_handler(stream: trio_netstack.TcpStream) -> None:
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)
        await stream.send_eof()


async def test_connect_echo_and_close(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, _b), trio.open_nursery() as nursery:
        await nursery.start(trio_netstack.serve_tcp, echo_handler, 8888)  # on b (current)
        async with trio_netstack.open_tcp_stream("192.0.2.2", 8888, stack=a) as s:
            await s.send_all(b"hello!")
            assert await s.receive_some() == b"hello!"
            await s.send_eof()
            assert await s.receive_some() == b""
            stats = s.statistics()
            assert stats.timestamps and stats.sack and stats.window_scale[0] > 0
            assert stats.mss == 1500 - 40 - 12
        nursery.cancel_scope.cancel()


async def test_bulk_both_ways_checked(autojump_clock: trio.abc.Clock) -> None:
    size = 2_000_000
    payload = random.Random(1).randbytes(size)
    async with open_stack_pair() as (a, b):
        listeners = await trio_netstack.open_tcp_listeners(5001, stack=b)
        got = bytearray()

        async def server() -> None:
            stream = await listeners[0].accept()
            async with stream:
                while data := await stream.receive_some():
                    got.extend(data)
                await stream.send_all(payload)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            stream = await trio_netstack.connect_tcp("192.0.2.2", 5001, stack=a)
            async with stream:
                await stream.send_all(payload)
                await stream.send_eof()
                back = bytearray()
                while data := await stream.receive_some():
                    back.extend(data)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        assert hashlib.sha256(back).digest() == hashlib.sha256(payload).digest()


async def test_refused(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, b):
        with pytest.raises(ConnectionRefusedError):
            await trio_netstack.connect_tcp("192.0.2.2", 9, stack=a)
        assert b.statistics().tcp["rst_sent"] == 1


async def test_connect_timeout_schedule(autojump_clock: trio.abc.Clock) -> None:
    # Nobody at 192.0.2.2: ARP gives up, the stack reports host unreachable.
    async with open_stack_pair() as (a, _b):
        start = trio.current_time()
        with pytest.raises(OSError) as info:
            await trio_netstack.connect_tcp("192.0.2.9", 80, stack=a)
        assert info.value.errno == 113  # EHOSTUNREACH
        assert trio.current_time() - start < 5


async def test_stream_conformance(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, b):
        port = [6000]

        async def pair() -> tuple[trio_netstack.TcpStream, trio_netstack.TcpStream]:
            port[0] += 1
            [listener] = await trio_netstack.open_tcp_listeners(port[0], stack=b)
            client = await trio_netstack.connect_tcp("192.0.2.2", port[0], stack=a)
            server = await listener.accept()
            await listener.aclose()
            return client, server

        await trio.testing.check_half_closeable_stream(pair, None)


async def test_ssl_stream_conformance(autojump_clock: trio.abc.Clock) -> None:
    """trio.SSLStream over our TCP streams passes Trio's own stream checks."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("stack.test").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async with open_stack_pair() as (a, b):
        port = [7000]

        async def pair() -> tuple[
            trio.SSLStream[trio_netstack.TcpStream], trio.SSLStream[trio_netstack.TcpStream]
        ]:
            port[0] += 1
            [listener] = await trio_netstack.open_tcp_listeners(port[0], stack=b)
            client_tcp = await trio_netstack.connect_tcp("192.0.2.2", port[0], stack=a)
            server_tcp = await listener.accept()
            await listener.aclose()
            client = trio.SSLStream(client_tcp, client_ctx, server_hostname="stack.test")
            server = trio.SSLStream(server_tcp, server_ctx, server_side=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.do_handshake)
                nursery.start_soon(server.do_handshake)
            return client, server

        await trio.testing.check_two_way_stream(pair, None)


async def pump(
    a: trio_netstack.Stack, b: trio_netstack.Stack, size: int, port: int
) -> tuple[bytes, bytes, trio_netstack.TcpStatistics]:
    """Send ``size`` bytes each way at once; return the sha256 of what each side read."""
    block = hashlib.sha256(b"block").digest() * 2048  # 64 KiB, not all zeros
    expected = hashlib.sha256()
    for _ in range(size // len(block)):
        expected.update(block)
    [listener] = await trio_netstack.open_tcp_listeners(port, stack=b)
    digests: dict[str, bytes] = {}

    async def send(stream: trio_netstack.TcpStream) -> None:
        for _ in range(size // len(block)):
            await stream.send_all(block)
        await stream.send_eof()

    async def receive(stream: trio_netstack.TcpStream, name: str) -> None:
        h = hashlib.sha256()
        while data := await stream.receive_some():
            h.update(data)
        digests[name] = h.digest()

    async def side(stream: trio_netstack.TcpStream, name: str) -> None:
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(send, stream)
            nursery.start_soon(receive, stream, name)

    async with trio.open_nursery() as nursery:
        client = await trio_netstack.connect_tcp("192.0.2.2", port, stack=a)
        server = await listener.accept()
        stats_holder = client
        nursery.start_soon(side, client, "a")
        nursery.start_soon(side, server, "b")
    await listener.aclose()
    assert digests["a"] == expected.digest() and digests["b"] == expected.digest()
    return digests["a"], digests["b"], stats_holder.statistics()


async def test_100_megabytes_each_way(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, b):
        await pump(a, b, 100 * 1024 * 1024, 5100)
        assert a.statistics().tcp["tasks"] <= 2


@pytest.mark.parametrize(
    "impair",
    [
        "loss=0.01",
        "loss=0.05",
        "loss=0.10",
        "loss=0.02,reorder=0.05,delay=1ms",
        "loss=0.01,dup=0.05,corrupt=0.01",
    ],
)
async def test_lossy_link_delivers_every_byte(autojump_clock: trio.abc.Clock, impair: str) -> None:
    async with open_stack_pair(impair=impair, seed=3) as (a, b):
        _, _, stats = await pump(a, b, 2 * 1024 * 1024, 5200)
        assert stats.retransmitted_segments > 0


async def test_streams_fail_clearly_after_the_stack_closes(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, b):
        [listener] = await trio_netstack.open_tcp_listeners(7100, stack=b)
        stream = await trio_netstack.connect_tcp("192.0.2.2", 7100, stack=a)
        await listener.accept()
    with pytest.raises(trio.BrokenResourceError) as info:
        await stream.receive_some()
    assert "the stack was closed" in str(info.value.__cause__)


async def test_backlog_overflow_and_reset_peer(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair() as (a, b):
        [listener] = await trio_netstack.open_tcp_listeners(7200, backlog=2, stack=b)
        first = await trio_netstack.connect_tcp("192.0.2.2", 7200, stack=a)
        second = await trio_netstack.connect_tcp("192.0.2.2", 7200, stack=a)
        # The backlog is full (nobody accepted): a third SYN is dropped and retried.
        with trio.move_on_after(2.5):
            await trio_netstack.connect_tcp("192.0.2.2", 7200, stack=a)
        assert b.statistics().tcp["listen_overflow"] >= 2
        server = await listener.accept()
        await server.aclose()  # nothing unread: a FIN
        assert await first.receive_some() == b""
        # Data for a fully closed socket is answered with RST (RFC 1122 4.2.2.13).
        with pytest.raises(trio.BrokenResourceError) as info, trio.fail_after(5):
            for _ in range(10000):  # each send yields; the RST arrives within a few rounds
                await first.send_all(b"after close")
        assert isinstance(info.value.__cause__, ConnectionResetError)
        await second.aclose()


async def test_stack_wide_tcp_totals(autojump_clock: trio.abc.Clock) -> None:
    async with open_stack_pair(impair="loss=0.05", seed=9) as (a, b):
        _, _, stats = await pump(a, b, 1024 * 1024, 7300)
        totals = a.statistics().tcp
        # The connection ended: its counts live on in the stack's totals.
        assert totals["retransmitted_segments"] >= stats.retransmitted_segments > 0
        assert totals["bytes_received"] == 1024 * 1024
        assert totals["fast_retransmits"] + totals["rto_timeouts"] > 0


@pytest.mark.parametrize("impair", [None, "loss=0.02,reorder=0.03,delay=1ms"])
async def test_many_connections_at_once_lose_and_mix_nothing(
    autojump_clock: trio.abc.Clock, impair: str | None
) -> None:
    # Thirty connections at once over one link, each with its own bytes: every third
    # moves bulk both ways, the others exchange small messages. The connection tasks,
    # the TCP layer's rounds for idle connections and the applications' direct sends all
    # interleave (with loss, also the frames queued behind the impaired device). Every
    # byte must come back to its own connection, in order.
    n_conns, bulk, messages = 30, 300_000, 50
    async with open_stack_pair(impair=impair, seed=11) as (a, b):
        [listener] = await trio_netstack.open_tcp_listeners(6000, stack=b, backlog=64)
        checked: list[int] = []

        async def echo(stream: trio_netstack.TcpStream) -> None:
            async with stream:
                while data := await stream.receive_some():
                    await stream.send_all(data)

        async def receive_exactly(stream: trio_netstack.TcpStream, n: int) -> bytes:
            got = bytearray()
            while len(got) < n:
                chunk = await stream.receive_some()
                assert chunk, "the echo ended early"
                got += chunk
            assert len(got) == n  # an echo never runs ahead of what was sent
            return bytes(got)

        async def client(i: int) -> None:
            stream = await trio_netstack.connect_tcp("192.0.2.2", 6000, stack=a)
            async with stream:
                if i % 3 == 0:
                    data = random.Random(i).randbytes(bulk)
                    async with trio.open_nursery() as inner:
                        inner.start_soon(stream.send_all, data)
                        assert await receive_exactly(stream, bulk) == data, f"bulk {i}"
                else:
                    for k in range(messages):
                        message = bytes([i]) * (1 + (k * 37) % 200)
                        await stream.send_all(message)
                        assert await receive_exactly(stream, len(message)) == message
                await stream.send_eof()
                assert await stream.receive_some() == b""
            checked.append(i)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, echo, [listener])
            with trio.fail_after(600):
                async with trio.open_nursery() as clients:
                    for i in range(n_conns):
                        clients.start_soon(client, i)
            nursery.cancel_scope.cancel()
        assert sorted(checked) == list(range(n_conns))
        if impair:
            assert a.statistics().tcp["retransmitted_segments"] > 0
        assert a.statistics().runtime.get("tx_queue_full", 0) == 0
