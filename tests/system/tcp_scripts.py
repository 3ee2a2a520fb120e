"""TCP programs run by the kernel side of a lab (``ip netns exec NS python -c``).

They use the kernel's own sockets, so they are the real Linux peer. The stack's
side of a test imports :func:`payload_chunks` from here, so both ends generate
the same deterministic bytes.

``TCP_PEER`` runs a small plan given on its command line, one step after the other,
and prints one line per step (flushed), so a test can wait for each:

    python -c TCP_PEER (listen PORT | connect HOST PORT) [rcvbuf=N] [sndbuf=N] STEP...

    send:N:SEED  send N bytes of payload_chunks(N, SEED)   -> "sent N SHA256"
    recv         read until end of stream                  -> "received N SHA256"
    recvn:N      read exactly N bytes                      -> "received N SHA256"
    shut         shutdown(SHUT_WR): our FIN                -> "shut"
    wait         read one line from standard input         -> "waiting", then "go"
    close        close the socket                          -> "closed"

It prints "listening PORT" once it listens and "connected LOCAL_PORT" once it has
a connection. An OSError prints "error ERRNO-NAME" and exits with status 1.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Iterator

CHUNK = 1 << 20


def payload_chunks(total: int, seed: int) -> Iterator[bytes]:
    """``total`` pseudo-random bytes from ``seed``, in chunks of at most 1 MiB."""
    rng = random.Random(seed)
    left = total
    while left > 0:
        n = min(left, CHUNK)
        yield rng.randbytes(n)
        left -= n


_PEER_MAIN = r"""
import errno, hashlib, socket, sys

def say(*words):
    print(*words, flush=True)

def main(argv):
    opts = {}
    if argv[0] == "listen":
        port, rest = int(argv[1]), argv[2:]
    else:
        host, port, rest = argv[1], int(argv[2]), argv[3:]
    while rest and "=" in rest[0]:
        key, value = rest.pop(0).split("=")
        opts[key] = int(value)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if "rcvbuf" in opts:  # before listen/connect, so the window scale fits it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, opts["rcvbuf"])
    if "sndbuf" in opts:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, opts["sndbuf"])
    if argv[0] == "listen":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(1)
        say("listening", port)
        conn, _ = s.accept()
        s.close()
    else:
        s.settimeout(30)
        s.connect((host, port))
        s.settimeout(None)
        conn = s
    say("connected", conn.getsockname()[1])
    for step in rest:
        name, _, arg = step.partition(":")
        if name == "send":
            total, seed = (int(x) for x in arg.split(":"))
            h = hashlib.sha256()
            for chunk in payload_chunks(total, seed):
                h.update(chunk)
                conn.sendall(chunk)
            say("sent", total, h.hexdigest())
        elif name in ("recv", "recvn"):
            want = int(arg) if name == "recvn" else None
            h, n = hashlib.sha256(), 0
            while want is None or n < want:
                data = conn.recv(1 << 20 if want is None else min(1 << 20, want - n))
                if not data:
                    break
                h.update(data)
                n += len(data)
            say("received", n, h.hexdigest())
        elif name == "shut":
            conn.shutdown(socket.SHUT_WR)
            say("shut")
        elif name == "wait":
            say("waiting")
            sys.stdin.readline()
            say("go")
        elif name == "close":
            conn.close()
            say("closed")
        else:
            raise SystemExit("unknown step " + step)

try:
    main(sys.argv[1:])
except OSError as exc:
    say("error", errno.errorcode.get(exc.errno, exc.errno))
    sys.exit(1)
"""

TCP_PEER = (
    "import random\nfrom collections.abc import Iterator\n"
    f"CHUNK = {CHUNK}\n{inspect.getsource(payload_chunks)}{_PEER_MAIN}"
)

TCP_CONNREFUSED = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except ConnectionRefusedError:
    print("ECONNREFUSED")
except OSError as exc:
    print("error", exc)
"""

# Connect COUNT times in a row to HOST PORT; each time send a few bytes, expect them
# back, then expect the stack to close first (EOF), then close. Prints "ok N".
TCP_MANY_CLIENT = r"""
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = 0
for i in range(count):
    msg = b"conn %06d" % i
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            data = s.recv(100)
            if not data:
                break
            got += data
        if got != msg:
            print("bad echo", i, got, flush=True)
            sys.exit(1)
        if s.recv(100) != b"":
            print("no EOF", i, flush=True)
            sys.exit(1)
    ok += 1
print("ok", ok, flush=True)
"""

# Accept COUNT connections one after the other on PORT and echo each until its EOF,
# then close (the stack, as client, closes first). Prints "listening" then "ok N".
TCP_MANY_SERVER = r"""
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(16)
print("listening", flush=True)
srv.settimeout(30)
for i in range(count):
    conn, _ = srv.accept()
    conn.settimeout(10)
    with conn:
        while data := conn.recv(100):
            conn.sendall(data)
print("ok", count, flush=True)
"""
