"""Small Python programs run by the kernel side of a lab (``ip netns exec NS python3 -c``).

They use the kernel's own sockets, so they are the real Linux peer.
"""

UDP_ROUNDTRIP = r"""
import hashlib, os, socket, sys
size, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
payload = os.urandom(size)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.settimeout(10)
s.sendto(payload, (host, port))
data, peer = s.recvfrom(70000)
print(len(data), data == payload, peer[0], peer[1])
"""

UDP_CONNREFUSED = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"is anyone there?")
try:
    s.recv(100)
    print("no error")
except ConnectionRefusedError:
    print("ECONNREFUSED")
except socket.timeout:
    print("timeout")
"""

FRAGMENT_FLOOD = r"""
import os, socket, struct, sys, time
dst, count, first_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
src = socket.inet_aton(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
payload = bytes(64)
sent = 0
for i in range(count):
    ident = (first_id + i) & 0xFFFF
    # A first fragment (MF set) whose rest never comes; the kernel fills the checksum.
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x2000, 64, 17, 0,
                         src, socket.inet_aton(dst))
    while True:
        try:
            s.sendto(header + payload, (dst, 0))
            break
        except BlockingIOError:
            pass
        except OSError as exc:  # ENOBUFS while the queue drains: retry
            if exc.errno != 105:
                raise
    sent += 1
    if sent % 100 == 0:
        time.sleep(0.002)  # pace the flood (load shaping) so the TAP queue does not overflow
print(sent)
"""

TEARDROP = r"""
import socket, struct, sys
dst, src = sys.argv[1], socket.inet_aton(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
def frag(ident, offset_units, more, data):
    flags = (0x2000 if more else 0) | offset_units
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(data), ident, flags, 64, 17, 0, src,
                    socket.inet_aton(dst))
    s.sendto(h + data, (dst, 0))
for ident in range(4242, 4252):
    frag(ident, 0, True, bytes(48))
    frag(ident, 3, False, bytes(48))  # starts at byte 24, inside the first: overlap
print("sent")
"""
