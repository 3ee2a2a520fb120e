"""AF_PACKET: own an existing Ethernet interface (one end of a veth, a macvlan, a NIC).

A raw packet socket bound to one interface with ``ETH_P_ALL`` sees every frame
the interface receives and can inject frames as if they came from the
interface. The stack shares the interface with the kernel: the kernel still
handles frames addressed to the interface's own addresses, so the stack should
use an IP address the kernel does not have on it.

Things that matter here, learnt the hard way:

* Every frame leaving the interface is copied to the packet sockets on it as
  ``PACKET_OUTGOING`` (the kernel skips only the socket that sent it): the
  kernel's own traffic on a shared interface, another stack's or tcpdump's
  injections. None of that arrived from the wire, so we ask the kernel not to
  deliver it (``PACKET_IGNORE_OUTGOING``, Linux 4.20+) and also drop (and count
  in ``rx_dropped``) any that still arrive.
* A frame sent by the local kernel through a veth carries a TCP/UDP checksum it
  has not computed (checksum offload: ``CHECKSUM_PARTIAL``). ``PACKET_AUXDATA``
  reports this as ``TP_STATUS_CSUMNOTREADY``; we pass it up as RX_CSUM_TRUSTED
  so the stack skips verification instead of dropping every such segment.
* If the stack uses a MAC other than the interface's, a real NIC filters the
  frames addressed to it away; a promiscuous membership keeps them coming. The
  membership belongs to the socket and ends when it closes.
* A packet socket taps the interface after GRO and before GSO: a veth peer's
  TSO/GSO super-frames (up to 64 KiB) and a NIC's GRO aggregates arrive
  unsegmented. Switch those off for an interface the stack owns (``ethtool -K
  IFACE gro off`` on a NIC; ``tso off gso off`` on the kernel's veth end, which
  the namespace lab does); frames are passed up as they come.
* The kernel strips an 802.1Q tag into skb metadata before a packet socket sees
  it (reported in the auxdata). We put it back, so the stack sees the frame as
  it was on the wire and does not mistake a VLAN frame for an untagged one.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct

import trio

from . import _netdev
from ._fd import FdLink
from .base import RX_CSUM_TRUSTED, DeviceCapabilities, LinkError, RxFrame
from .netns import in_netns

__all__ = ["PacketLink", "open_packet"]

# <linux/if_ether.h>, <linux/if_packet.h>
_ETH_P_ALL = 0x0003
_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_AUXDATA = 8
_PACKET_IGNORE_OUTGOING = 23
_PACKET_MR_PROMISC = 1
_PACKET_OUTGOING = 4
_PACKET_STATISTICS = 6
_SO_RCVBUFFORCE = 33
#: Receive buffer asked for (as root, beyond net.core.rmem_max): frames the kernel
#: queues for us while the stack is busy; the default of ~200 KiB overflows under bulk TCP.
RECEIVE_BUFFER = 8 * 1024 * 1024
_STATS = struct.Struct("=II")  # struct tpacket_stats: packets, drops (reset on read)
_TP_STATUS_CSUMNOTREADY = 1 << 3
_TP_STATUS_VLAN_VALID = 1 << 4
_TP_STATUS_VLAN_TPID_VALID = 1 << 6
_TP_STATUS_CSUM_VALID = 1 << 7
_TRUSTED_STATUS = _TP_STATUS_CSUMNOTREADY | _TP_STATUS_CSUM_VALID

# struct tpacket_auxdata: tp_status, tp_len, tp_snaplen (u32); tp_mac, tp_net,
# tp_vlan_tci, tp_vlan_tpid (u16).
_AUXDATA = struct.Struct("=IIIHHHH")
_ANC_SIZE = socket.CMSG_SPACE(_AUXDATA.size)

# Room for the largest frame a packet socket can be handed: with GSO/GRO a veth
# peer may pass a 64 KiB super-packet up unsegmented. Truncated frames are dropped.
_READ_SIZE = 65536 + 64

_FRAME_REFUSED = frozenset(
    {errno.EINVAL, errno.EMSGSIZE, errno.ENOBUFS, errno.ENOMEM, errno.ENETDOWN, errno.ENXIO}
)


_CAPABILITIES = DeviceCapabilities(rx_checksum_trusted=True)


def _where(netns: str | None) -> str:
    return f"namespace {netns!r}" if netns is not None else "the current namespace"


class PacketLink(FdLink):
    """An AF_PACKET socket bound to one interface. Made by :func:`open_packet`."""

    _kind = "packet"
    _frame_refused = _FRAME_REFUSED

    def __init__(
        self,
        sock: socket.socket,
        name: str,
        *,
        mtu: int,
        hw_address: bytes,
        netns: str | None = None,
        promiscuous: bool = False,
        max_batch: int = 64,
    ) -> None:
        super().__init__(
            sock,
            sock.fileno(),
            name,
            mtu=mtu,
            hw_address=hw_address,
            netns=netns,
            max_batch=max_batch,
        )
        self._sock = sock
        self.promiscuous = promiscuous
        # PACKET_AUXDATA reports the local kernel's unfinished checksums (see _read_frames);
        # what we send goes as the stack built it: no checksum completion, no TSO.
        self.capabilities = _CAPABILITIES
        self._write = sock.send

    def __repr__(self) -> str:
        return f"<PacketLink {self.name!r} in {_where(self.netns)}>"

    def _drain(self) -> list[RxFrame]:
        frames = super()._drain()
        # Frames the kernel dropped because our socket queue was full: count them too
        # (PACKET_STATISTICS resets on every read, so this is the delta).
        with contextlib.suppress(OSError):
            self.stats.rx_dropped += _STATS.unpack(
                self._sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, _STATS.size)
            )[1]
        return frames

    def _read_frames(self, frames: list[RxFrame], limit: int) -> int:
        nbytes = 0
        recvmsg = self._sock.recvmsg
        unpack_aux = _AUXDATA.unpack_from
        try:
            while len(frames) < limit:
                data, ancdata, msg_flags, addr = recvmsg(_READ_SIZE, _ANC_SIZE)
                # addr = (ifname, proto, pkttype, hatype, hwaddr)
                if addr[2] == _PACKET_OUTGOING or msg_flags & socket.MSG_TRUNC:
                    self.stats.rx_dropped += 1
                    continue
                flags = 0
                for level, kind, cdata in ancdata:
                    if level == _SOL_PACKET and kind == _PACKET_AUXDATA:
                        status, _, _, _, _, tci, tpid = unpack_aux(cdata)
                        if status & _TRUSTED_STATUS:
                            flags = RX_CSUM_TRUSTED
                        if status & _TP_STATUS_VLAN_VALID and len(data) >= 12:
                            if not status & _TP_STATUS_VLAN_TPID_VALID:
                                tpid = 0x8100
                            data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
                nbytes += len(data)
                frames.append((data, flags))
        except BlockingIOError:
            pass
        return nbytes

    def _broken(self, exc: OSError, *, reading: bool) -> trio.BrokenResourceError:
        if not reading:
            return trio.BrokenResourceError(f"sending on {self.name!r}: {exc}")
        if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
            return trio.BrokenResourceError(f"interface {self.name!r} went away: {exc}")
        return trio.BrokenResourceError(f"reading {self.name!r}: {exc}")

    def _close_device(self) -> None:
        self._sock.close()


def open_packet(
    iface: str,
    *,
    netns: str | None = None,
    stack_mac: bytes | None = None,
    max_batch: int = 64,
) -> PacketLink:
    """Open an AF_PACKET socket on Ethernet interface ``iface`` (in ``netns`` if given).

    ``hw_address`` of the result is the interface's MAC. Pass ``stack_mac`` when
    the stack will use a different MAC: the socket then joins promiscuous mode so
    frames addressed to that MAC are received too. The interface is brought up if
    it is down. Raises LinkError with a message that says what to do.
    """
    try:
        _netdev.check_ifname(iface)
    except ValueError as exc:
        raise LinkError(str(exc)) from None
    if stack_mac is not None and len(stack_mac) != 6:
        raise ValueError("stack_mac must be 6 bytes")
    where = _where(netns)
    with in_netns(netns), _netdev.control_socket() as ctl:
        try:
            ifindex = _netdev.get_ifindex(ctl, iface)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise LinkError(f"unknown interface {iface!r} in {where}") from None
            raise LinkError(f"cannot look up interface {iface!r}: {exc}") from exc
        hatype, mac = _netdev.get_hwaddr(ctl, iface)
        if hatype != _netdev.ARPHRD_ETHER:
            raise LinkError(
                f"interface {iface!r} in {where} is not an Ethernet interface "
                f"(ARPHRD type {hatype})"
            )
        try:
            _netdev.bring_up(ctl, iface)
        except PermissionError as exc:
            raise LinkError(f"bringing {iface!r} up needs root (CAP_NET_ADMIN): {exc}") from exc
        # A veth whose end was just brought up (by us or by whoever set it up)
        # drops what the kernel sends until linkwatch has run; see wait_running.
        _netdev.wait_running(ctl, iface, timeout=1.0)
        mtu = _netdev.get_mtu(ctl, iface)
        try:
            # Protocol 0 receives nothing until bind() names the interface, so no
            # frame from another interface can slip into the queue in between.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        except PermissionError as exc:
            raise LinkError("AF_PACKET needs root (CAP_NET_RAW)") from exc
    promiscuous = stack_mac is not None and stack_mac != mac
    try:
        sock.setblocking(False)
        sock.setsockopt(_SOL_PACKET, _PACKET_AUXDATA, 1)
        with contextlib.suppress(OSError):  # needs CAP_NET_ADMIN; the default works too
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
        # Older kernels lack this option; the pkttype check in _drain does the job.
        with contextlib.suppress(OSError):
            sock.setsockopt(_SOL_PACKET, _PACKET_IGNORE_OUTGOING, 1)
        if promiscuous:
            mreq = struct.pack("iHH8s", ifindex, _PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, mreq)
        sock.bind((iface, _ETH_P_ALL))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENODEV:
            raise LinkError(f"unknown interface {iface!r} in {where}") from None
        raise LinkError(f"cannot open AF_PACKET socket on {iface!r} in {where}: {exc}") from exc
    return PacketLink(
        sock,
        iface,
        mtu=mtu,
        hw_address=mac,
        netns=netns,
        promiscuous=promiscuous,
        max_batch=max_batch,
    )
