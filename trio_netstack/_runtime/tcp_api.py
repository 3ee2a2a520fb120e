"""TCP streams and listeners with Trio's interfaces, and the functions that open them.

:class:`TcpStream` implements :class:`trio.abc.HalfCloseableStream` exactly:
``send_eof`` sends FIN; ``receive_some`` returns ``b""`` only at end of stream;
a reset raises :class:`trio.BrokenResourceError` from
:class:`ConnectionResetError`; use after ``aclose`` raises
:class:`trio.ClosedResourceError`; two tasks sending (or receiving) at once
raise :class:`trio.BusyResourceError`. Bytes accepted by ``send_all`` are in the
connection's send buffer and are delivered unless the connection fails.
"""

from __future__ import annotations

import errno
import operator
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any

import attrs
import trio

from ..proto.tcp.connection import (
    CLOSED,
    SYN_RECEIVED,
    SYN_SENT,
    Keepalive,
    TcpConfig,
    TcpConnection,
)
from ..proto.tcp.demux import Listener
from ..wire.addr import ip_to_str
from .conflict import ConflictDetector
from .names import resolve_ipv4_literal
from .stack import Stack, current_stack
from .tcp import AcceptQueue, ConnectionHandle, TcpStatistics, connection_statistics

DEFAULT_RECEIVE = 65536


def _config_for(
    stack: Stack,
    *,
    nodelay: bool | None = None,
    keepalive: bool | Keepalive | None = None,
    send_buffer: int | None = None,
    receive_buffer: int | None = None,
    user_timeout: float | None = None,
) -> TcpConfig:
    config = stack.config.tcp
    changes: dict[str, Any] = {}
    if nodelay is not None:
        changes["nodelay"] = nodelay
    if keepalive is not None:
        changes["keepalive"] = Keepalive() if keepalive is True else (keepalive or None)
    if send_buffer is not None:
        if send_buffer < 1:
            raise ValueError("send_buffer must be positive")
        changes["send_buffer"] = send_buffer
    if receive_buffer is not None:
        if receive_buffer < 1:
            raise ValueError("receive_buffer must be positive")
        changes["receive_buffer"] = receive_buffer
    if user_timeout is not None:
        changes["user_timeout"] = user_timeout
    return attrs.evolve(config, **changes) if changes else config


class TcpStream(trio.abc.HalfCloseableStream):
    """A TCP connection of the stack (create with :func:`connect_tcp` or a listener)."""

    def __init__(self, handle: ConnectionHandle) -> None:
        self._handle = handle
        self._conn: TcpConnection = handle.conn
        self._closed = False
        self._eof_sent = False
        self._sending = ConflictDetector("another task is already sending on this stream")
        self._receiving = ConflictDetector("another task is already receiving on this stream")

    # --- helpers -----------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        err = self._conn.error
        if err is not None:
            raise trio.BrokenResourceError(f"the connection failed: {err}") from err

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream was closed")

    @property
    def socket_state(self) -> str:
        return self._conn.state.value

    # --- sending -----------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._sending:
            self._check_open()
            if self._eof_sent:
                raise trio.ClosedResourceError(
                    "send_eof() was called: the stream is closed for sending"
                )
            view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
            sent = 0
            conn = self._conn
            # A checkpoint, as Trio's streams: cancellable before anything is queued, and
            # a schedule point (parking for buffer space is one; else one at the end).
            await trio.lowlevel.checkpoint_if_cancelled()
            parked = False
            while True:
                self._check_open()
                self._raise_if_failed()
                if conn.state is CLOSED or conn.fin_queued:
                    raise trio.BrokenResourceError("the connection is closed for sending")
                if sent < len(view):
                    taken = conn.app_send(view[sent:], trio.current_time())
                    if taken:
                        sent += taken
                        self._handle.flush()
                if sent >= len(view):
                    if not parked:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return
                await self._handle.wait_change()
                parked = True

    async def wait_send_all_might_not_block(self) -> None:
        with self._sending:
            while True:
                self._check_open()
                self._raise_if_failed()
                if self._conn.send_space > 0 or self._conn.state is CLOSED:
                    await trio.lowlevel.checkpoint()
                    return
                await self._handle.wait_change()

    async def send_eof(self) -> None:
        """Half-close: send FIN after the queued data (RFC 9293 3.10.4)."""
        self._sending.check()
        self._check_open()
        if not self._eof_sent:
            self._eof_sent = True
            if self._conn.state is not CLOSED:
                self._conn.app_close(trio.current_time())
                self._handle.flush()
        await trio.lowlevel.checkpoint()

    # --- receiving ---------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE
        max_bytes = operator.index(max_bytes)  # TypeError for 1.5, as trio's streams
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        with self._receiving:
            conn = self._conn
            # Cancellable only before data is taken (taken bytes are never lost to a
            # Cancelled); one schedule point: the park, or a shielded one at the end.
            await trio.lowlevel.checkpoint_if_cancelled()
            parked = False
            while True:
                self._check_open()
                data = conn.app_receive(max_bytes, trio.current_time())
                if data is not None:
                    if conn.has_output:
                        self._handle.flush()  # a window update to send
                    if not parked:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return data
                self._raise_if_failed()
                await self._handle.wait_change()
                parked = True

    # --- closing -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close both directions. Unread received data makes it an abort (RFC 2525 2.17)."""
        if not self._closed:
            self._closed = True
            conn = self._conn
            now = trio.current_time()
            if conn.state is not CLOSED:
                conn.app_close(now, full=True)
                self._handle.flush()
            self._handle.wake()  # wake our own parked senders/receivers
        await trio.lowlevel.checkpoint()

    # --- information -------------------------------------------------------------------

    def statistics(self) -> TcpStatistics:
        return connection_statistics(self._conn)

    def getsockname(self) -> tuple[str, int]:
        return (ip_to_str(self._conn.local_ip), self._conn.local_port)

    def getpeername(self) -> tuple[str, int]:
        return (ip_to_str(self._conn.remote_ip), self._conn.remote_port)

    @property
    def nodelay(self) -> bool:
        return self._conn.nodelay

    @nodelay.setter
    def nodelay(self, value: bool) -> None:
        self._conn.nodelay = value
        if value:
            self._conn.flush(trio.current_time())
            self._handle.kick()


async def _wait_established(handle: ConnectionHandle) -> None:
    conn = handle.conn
    try:
        while conn.state in (SYN_SENT, SYN_RECEIVED):
            await handle.wait_change()
    except BaseException:
        conn.app_abort(trio.current_time())
        handle.kick()
        raise
    if conn.error is not None:
        raise conn.error
    if conn.state is CLOSED:
        raise ConnectionResetError(errno.ECONNRESET, "the connection closed while opening")


async def connect_tcp(
    host: str,
    port: int,
    *,
    local_address: str | None = None,
    local_port: int = 0,
    nodelay: bool | None = None,
    keepalive: bool | Keepalive | None = None,
    send_buffer: int | None = None,
    receive_buffer: int | None = None,
    user_timeout: float | None = None,
    stack: Stack | None = None,
) -> TcpStream:
    """Open a TCP connection (RFC 9293 active open) and return its stream.

    Fails with ``ConnectionRefusedError`` (RST or ICMP port unreachable),
    ``TimeoutError`` (no answer after the SYN retries) or ``OSError(EHOSTUNREACH)``.
    """
    owner = stack or current_stack()
    if not 0 < port <= 0xFFFF:
        raise ValueError(f"port {port} out of range 1..65535")
    dst = resolve_ipv4_literal(host)
    route = owner.ip.route(dst)  # NoRouteError here
    local_ip = resolve_ipv4_literal(local_address) if local_address else route.source
    config = _config_for(
        owner,
        nodelay=nodelay,
        keepalive=keepalive,
        send_buffer=send_buffer,
        receive_buffer=receive_buffer,
        user_timeout=user_timeout,
    )
    handle = owner.tcp.open_connection(local_ip, dst, port, local_port, config)
    await _wait_established(handle)
    return TcpStream(handle)


class _StreamOpener:
    """``await open_tcp_stream(...)`` or ``async with open_tcp_stream(...) as s``."""

    def __init__(self, host: str, port: int, kwargs: dict[str, Any]) -> None:
        self._args = (host, port)
        self._kwargs = kwargs
        self._stream: TcpStream | None = None

    def __await__(self) -> Generator[Any, None, TcpStream]:
        return connect_tcp(*self._args, **self._kwargs).__await__()

    async def __aenter__(self) -> TcpStream:
        self._stream = await connect_tcp(*self._args, **self._kwargs)
        return self._stream

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stream is not None:
            await self._stream.aclose()


def open_tcp_stream(host: str, port: int, **kwargs: Any) -> _StreamOpener:
    """Like :func:`trio.open_tcp_stream`; usable with ``await`` or ``async with``."""
    return _StreamOpener(host, port, kwargs)


class TcpListener(trio.abc.Listener[TcpStream]):
    """A listening TCP port (``trio.abc.Listener``)."""

    def __init__(
        self, stack: Stack, local_ip: int, port: int, backlog: int, config: TcpConfig
    ) -> None:
        self._stack = stack
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self._accepting = ConflictDetector("another task is already accepting")
        self._listener: Listener[AcceptQueue] = stack.tcp.demux.listen(
            local_ip, port, backlog, self, config
        )

    def _wake(self) -> None:
        self._lot.unpark_all()

    def getsockname(self) -> tuple[str, int]:
        return (ip_to_str(self._listener.local_ip), self._listener.port)

    async def accept(self) -> TcpStream:
        with self._accepting:
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("the listener was closed")
                ready = self._listener.ready
                while ready:
                    conn = ready.pop(0)
                    handle = self._stack.tcp.handles.get(conn)
                    if handle is not None and conn.error is None:
                        await trio.lowlevel.checkpoint()
                        return TcpStream(handle)
                await self._lot.park()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            # Connections not yet accepted are reset, like close() on a Linux listener.
            for conn in self._stack.tcp.demux.unlisten(self._listener, trio.current_time()):
                handle = self._stack.tcp.handles.get(conn)
                if handle is not None:
                    handle.kick()
            self._lot.unpark_all()
        await trio.lowlevel.checkpoint()


async def open_tcp_listeners(
    port: int,
    *,
    host: str | None = None,
    backlog: int | None = None,
    nodelay: bool | None = None,
    keepalive: bool | Keepalive | None = None,
    send_buffer: int | None = None,
    receive_buffer: int | None = None,
    stack: Stack | None = None,
) -> list[TcpListener]:
    """Listen on ``port`` (of ``host``, or every address); like :func:`trio.open_tcp_listeners`."""
    owner = stack or current_stack()
    local_ip = resolve_ipv4_literal(host) if host else 0
    if local_ip and not owner.ip.is_local(local_ip):
        raise OSError(errno.EADDRNOTAVAIL, f"{host} is not an address of this stack")
    config = _config_for(
        owner,
        nodelay=nodelay,
        keepalive=keepalive,
        send_buffer=send_buffer,
        receive_buffer=receive_buffer,
    )
    listener = TcpListener(owner, local_ip, port, backlog or 128, config)
    await trio.lowlevel.checkpoint()
    return [listener]


async def serve_tcp(
    handler: Callable[[TcpStream], Awaitable[object]],
    port: int,
    *,
    host: str | None = None,
    backlog: int | None = None,
    handler_nursery: trio.Nursery | None = None,
    stack: Stack | None = None,
    task_status: trio.TaskStatus[list[TcpListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on ``port`` forever; like :func:`trio.serve_tcp`."""
    listeners = await open_tcp_listeners(port, host=host, backlog=backlog, stack=stack)
    await trio.serve_listeners(
        handler, listeners, handler_nursery=handler_nursery, task_status=task_status
    )
