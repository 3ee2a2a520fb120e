#!/usr/bin/env python3
"""Kernel-side benchmark peer (stdlib only), run inside a namespace by tools/bench/run.py.

Clients print one JSON line with their result; servers print ``ready`` once they
listen and then serve until the client is done (bulk-recv: one connection) or
until killed. Every socket has a timeout, so nothing waits forever.

    peer.py bulk-send HOST PORT NBYTES   # send NBYTES, half-close, read the peer's sha256
    peer.py bulk-recv PORT               # receive to EOF, send back the sha256
    peer.py tcp-echo PORT                # echo every connection (TCP_NODELAY)
    peer.py rr HOST PORT N               # N 1-byte request/response transactions
    peer.py accept-close PORT            # accept connections and close them at once
    peer.py cps HOST PORT N              # N connect / wait-for-close / close cycles
    peer.py udp-echo PORT                # echo datagrams
    peer.py udp-flood HOST PORT N WINDOW # N 64-byte datagrams, WINDOW outstanding
    peer.py hold HOST PORT N             # open N idle connections until stdin closes
    peer.py hold-server PORT             # accept connections and keep them open
"""

from __future__ import annotations

import hashlib
import json
import random
import resource
import select
import socket
import sys
import threading
import time
from collections.abc import Callable

TIMEOUT = 30.0
BLOCK_SIZE = 1 << 20


def pattern_block() -> bytes:
    """The 1 MiB block both ends of a bulk transfer repeat (deterministic, incompressible)."""
    return random.Random(20261121).randbytes(BLOCK_SIZE)


def expected_sha256(nbytes: int) -> str:
    block = pattern_block()
    h = hashlib.sha256()
    full, rest = divmod(nbytes, BLOCK_SIZE)
    for _ in range(full):
        h.update(block)
    h.update(block[:rest])
    return h.hexdigest()


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def emit(obj: dict[str, object]) -> None:
    print(json.dumps(obj), flush=True)


def ready() -> None:
    print("ready", flush=True)


def listen(port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        s.listen(512)
    s.settimeout(TIMEOUT)
    return s


def recv_all(s: socket.socket, limit: int = 1 << 16) -> bytes:
    out = bytearray()
    while len(out) < limit:
        chunk = s.recv(limit - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def bulk_send(host: str, port: int, nbytes: int) -> None:
    block = memoryview(pattern_block())
    h = hashlib.sha256()
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    s = socket.create_connection((host, port), timeout=TIMEOUT)
    left = nbytes
    while left:
        chunk = block[: min(left, BLOCK_SIZE)]
        s.sendall(chunk)
        h.update(chunk)
        left -= len(chunk)
    s.shutdown(socket.SHUT_WR)
    peer = recv_all(s, 64).decode()
    elapsed = time.perf_counter() - t0
    s.close()
    cpu = cpu_seconds() - c0
    emit(
        {
            "bytes": nbytes,
            "seconds": elapsed,
            "cpu": cpu,
            "sha256": h.hexdigest(),
            "peer_sha256": peer,
        }
    )


def bulk_recv(port: int) -> None:
    ls = listen(port)
    ready()
    conn, _ = ls.accept()
    conn.settimeout(TIMEOUT)
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    h = hashlib.sha256()
    total = 0
    buf = bytearray(1 << 18)
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        h.update(memoryview(buf)[:n])
        total += n
    elapsed = time.perf_counter() - t0
    digest = h.hexdigest()
    conn.sendall(digest.encode())
    conn.close()
    ls.close()
    emit({"bytes": total, "seconds": elapsed, "cpu": cpu_seconds() - c0, "sha256": digest})


def _echo_conn(conn: socket.socket) -> None:
    conn.settimeout(TIMEOUT)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass


def tcp_echo(port: int) -> None:
    ls = listen(port)
    ls.settimeout(None)  # runs until killed by run.py
    ready()
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=_echo_conn, args=(conn,), daemon=True).start()


def rr(host: str, port: int, n: int) -> None:
    s = socket.create_connection((host, port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"x")  # warm-up transaction
    s.recv(1)
    t0 = time.perf_counter()
    for _ in range(n):
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise RuntimeError("bad or missing echo")
    elapsed = time.perf_counter() - t0
    s.close()
    emit({"transactions": n, "seconds": elapsed})


def accept_close(port: int) -> None:
    ls = listen(port)
    ls.settimeout(None)  # runs until killed by run.py
    ready()
    while True:
        conn, _ = ls.accept()
        conn.close()


def cps(host: str, port: int, n: int) -> None:
    t0 = time.perf_counter()
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=TIMEOUT)
        if s.recv(1):  # the server closes at once: wait for its FIN
            raise RuntimeError("server sent data")
        s.close()
    elapsed = time.perf_counter() - t0
    emit({"connections": n, "seconds": elapsed})


def udp_echo(port: int) -> None:
    s = listen(port, socket.SOCK_DGRAM)
    s.settimeout(None)  # runs until killed by run.py
    ready()
    while True:
        data, addr = s.recvfrom(65536)
        s.sendto(data, addr)


def udp_flood(host: str, port: int, n: int, window: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.settimeout(0.2)
    payload = bytes(64)
    sent = received = lost = 0
    t0 = time.perf_counter()
    while sent < n or sent - received - lost > 0:
        while sent < n and sent - received - lost < window:
            s.send(payload)
            sent += 1
        try:
            s.recv(2048)
            received += 1
        except TimeoutError:
            lost = sent - received  # give up on everything outstanding
    elapsed = time.perf_counter() - t0
    emit({"sent": sent, "received": received, "seconds": elapsed})


def _room_for(n: int) -> None:
    # Thousands of held sockets need more descriptors than the usual soft limit of 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):  # no CAP_SYS_RESOURCE: up to the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def hold(host: str, port: int, n: int) -> None:
    _room_for(n)
    conns = [socket.create_connection((host, port), timeout=TIMEOUT) for _ in range(n)]
    ready()
    r, _, _ = select.select([sys.stdin], [], [], 120)  # run.py closes stdin when done
    # Close in paced chunks: 10,000 FINs at once overflow the TAP queue, and the kernel's
    # retransmissions of them stay synchronised (and keep overflowing it) for minutes.
    for i, c in enumerate(conns):
        c.close()
        if i % 100 == 99:
            time.sleep(0.05)
    emit({"held": len(conns), "released_by_stdin": bool(r)})


def hold_server(port: int) -> None:
    _room_for(16384)
    ls = listen(port)
    ls.settimeout(None)  # runs until killed by run.py
    ready()
    conns = []
    while True:
        conns.append(ls.accept()[0])


def main() -> None:
    cmd, *args = sys.argv[1:] or ["help"]
    table: dict[str, tuple[Callable[..., None], tuple[type, ...]]] = {
        "bulk-send": (bulk_send, (str, int, int)),
        "bulk-recv": (bulk_recv, (int,)),
        "tcp-echo": (tcp_echo, (int,)),
        "rr": (rr, (str, int, int)),
        "accept-close": (accept_close, (int,)),
        "cps": (cps, (str, int, int)),
        "udp-echo": (udp_echo, (int,)),
        "udp-flood": (udp_flood, (str, int, int, int)),
        "hold": (hold, (str, int, int)),
        "hold-server": (hold_server, (int,)),
    }
    if cmd not in table or len(args) != len(table[cmd][1]):
        sys.exit(__doc__)
    fn, types = table[cmd]
    fn(*(t(a) for t, a in zip(types, args, strict=True)))


if __name__ == "__main__":
    main()
