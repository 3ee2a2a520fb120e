"""TAP devices: the kernel hands us whole Ethernet frames through /dev/net/tun.

A TAP is a virtual Ethernet interface whose "wire" is a file descriptor: every
frame the kernel transmits on it is one ``read()``, every ``write()`` is one frame
the kernel receives on it. We open it with ``IFF_TAP | IFF_NO_PI`` so a read is a
bare Ethernet frame (no 4-byte packet-information prefix).

Two ways of use:

* attach to a persistent device someone made with ``ip tuntap add dev tap0 mode
  tap`` (it survives us and keeps its addresses and routes);
* create a device on the fly (``create=True`` and no such device): it exists only
  while we hold the descriptor.

The fd is non-blocking and drained in batches like every descriptor device
(see ``_fd.FdLink``); what is TAP's own is opening the device and, with
``offload``, the virtio header in front of every frame.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import struct

import trio

from ..wire.checksum import ones_sum, pseudo_header_sum
from . import _netdev
from ._fd import FdLink
from .base import RX_CSUM_TRUSTED, DeviceCapabilities, LinkError, RxFrame
from .netns import in_netns

__all__ = ["TapLink", "open_tap"]

TUN_PATH = "/dev/net/tun"

# <linux/if_tun.h>
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_IFF_VNET_HDR = 0x4000
_TUNSETOFFLOAD = 0x400454D0
_TUN_F_CSUM = 0x01
_TUN_F_TSO4 = 0x02
# struct virtio_net_hdr (little endian, 10 bytes): flags, gso_type, hdr_len, gso_size,
# csum_start, csum_offset.
_VNET = struct.Struct("<BBHHHH")
_VNET_LEN = _VNET.size
_VNET_F_NEEDS_CSUM = 1  # the transport checksum holds only the pseudo-header sum
_VNET_F_DATA_VALID = 2  # the kernel verified the checksum already
_VNET_GSO_NONE = 0
_VNET_GSO_TCPV4 = 1
_NO_VNET_HDR = bytes(_VNET_LEN)

#: The most TCP payload of one super-segment we hand the kernel: with its headers it
#: stays below the 65,535 bytes an IPv4 total length can say.
TSO_MAX_PAYLOAD = 64000
# With offload the kernel completes the TCP checksum of every IPv4/TCP frame we write
# (NEEDS_CSUM; see _write_vnet; UDP goes as the stack summed it), cuts TCP frames
# longer than the MTU (TSO), and flags the checksums of what it hands us.
_OFFLOAD_CAPABILITIES = DeviceCapabilities(
    tx_checksum_partial=True, tso_max_payload=TSO_MAX_PAYLOAD, rx_checksum_trusted=True
)

# A read must be able to hold the largest frame the device can hand us, whatever
# its MTU is changed to later (a short buffer would silently truncate). A 64 KiB
# buffer costs no more per read than a 2 KiB one: CPython shrinks the result.
_READ_SIZE = 65536 + 64

# Errors of one write that mean "this frame was refused", not "the link is gone":
# down device (EIO), runt or bogus frame (EINVAL), too big (EMSGSIZE), no memory
# for the skb right now (ENOBUFS, ENOMEM).
_FRAME_REFUSED = frozenset({errno.EIO, errno.EINVAL, errno.EMSGSIZE, errno.ENOBUFS, errno.ENOMEM})


def _where(netns: str | None) -> str:
    return f"network namespace {netns!r}" if netns is not None else "the current network namespace"


class TapLink(FdLink):
    """An open TAP device. Made by :func:`open_tap`; a Link like any other."""

    _kind = "TAP"
    _frame_refused = _FRAME_REFUSED

    def __init__(
        self,
        fd: int,
        name: str,
        *,
        mtu: int,
        netns: str | None = None,
        max_batch: int = 64,
        offload: bool = False,
    ) -> None:
        # The kernel owns the interface's MAC (it answers ARP for its own address
        # with it); the stack is a different host on the same wire and picks its own.
        super().__init__(fd, fd, name, mtu=mtu, hw_address=None, netns=netns, max_batch=max_batch)
        self._fd = fd
        # With IFF_VNET_HDR and TUNSETOFFLOAD(CSUM|TSO4) the kernel skips checksums for
        # us and hands over whole TCP super-segments (up to 64 KiB) instead of cutting
        # them into MTU-sized frames: far fewer reads and wake-ups per byte. What we
        # write carries a virtio header asking the kernel to complete TCP checksums and
        # to cut our own super-segments (see _write_vnet).
        self.offload = offload
        if offload:
            self.capabilities = _OFFLOAD_CAPABILITIES
        self.gso_frames = 0  # received frames larger than the MTU (kernel GSO)
        self.tso_frames = 0  # super-segments we handed to the kernel
        if offload:
            self._write = self._write_vnet
        else:
            # A C callable: try_send makes no Python call per frame.
            self._write = functools.partial(os.write, fd)

    def __repr__(self) -> str:
        return f"<TapLink {self.name!r} in {_where(self.netns)} fd={self.fileno()}>"

    def _read_frames(self, frames: list[RxFrame], limit: int) -> int:
        fd = self._fd
        nbytes = 0
        read = os.read
        offload = self.offload
        try:
            while len(frames) < limit:
                data = read(fd, _READ_SIZE)
                if offload:
                    if len(data) < _VNET_LEN:
                        self.stats.rx_dropped += 1
                        continue
                    vflags, gso_type, _hdr_len, _gso_size, _start, _off = _VNET.unpack_from(data)
                    data = data[_VNET_LEN:]
                    if gso_type != _VNET_GSO_NONE:
                        self.gso_frames += 1
                    trusted = (
                        RX_CSUM_TRUSTED if vflags & (_VNET_F_NEEDS_CSUM | _VNET_F_DATA_VALID) else 0
                    )
                    nbytes += len(data)
                    frames.append((data, trusted))
                    continue
                nbytes += len(data)
                frames.append((data, 0))
        except BlockingIOError:
            pass
        return nbytes

    def _broken(self, exc: OSError, *, reading: bool) -> trio.BrokenResourceError:
        if exc.errno == errno.EBADFD:
            return trio.BrokenResourceError(f"TAP device {self.name!r} was deleted while open")
        return trio.BrokenResourceError(
            f"{'reading' if reading else 'writing'} TAP {self.name!r}: {exc}"
        )

    def _close_device(self) -> None:
        os.close(self._fd)

    def _write_vnet(self, frame: bytes | bytearray | memoryview) -> int:
        """One write in offload mode: a virtio header, then the frame; the frame's bytes.

        An IPv4/TCP frame asks the kernel to complete its checksum (NEEDS_CSUM; the field
        gets the one's-complement sum of the pseudo-header, as Linux's own
        CHECKSUM_PARTIAL packets carry it, whatever the stack put there) and, when
        longer than the MTU, to cut it into MTU-sized segments (TSO). Anything else goes
        as it is, under an all-zero header. ``writev`` spares copying the frame.
        """
        view = memoryview(frame)
        if (
            len(view) < 54
            or view[12] != 0x08  # EtherType IPv4 (0x0800)
            or view[13] != 0x00
            or view[23] != 6
            or (view[20] & 0x3F) | view[21]  # a fragment: the checksum is not ours to do
        ):
            return os.writev(self._fd, [_NO_VNET_HDR, view]) - _VNET_LEN
        ihl = (view[14] & 0x0F) * 4
        tcp_at = 14 + ihl
        thl = (view[tcp_at + 12] >> 4) * 4
        src = int.from_bytes(view[26:30], "big")
        dst = int.from_bytes(view[30:34], "big")
        partial = ones_sum(b"", pseudo_header_sum(src, dst, 6, len(view) - tcp_at))
        if len(view) > self.mtu + 14:
            gso, gso_size = _VNET_GSO_TCPV4, self.mtu - ihl - thl
            self.tso_frames += 1
        else:
            gso, gso_size = _VNET_GSO_NONE, 0
        header = _VNET.pack(_VNET_F_NEEDS_CSUM, gso, tcp_at + thl, gso_size, tcp_at, 16)
        parts: list[bytes | memoryview] = [
            header,
            view[: tcp_at + 16],
            partial.to_bytes(2, "big"),
            view[tcp_at + 18 :],
        ]
        return os.writev(self._fd, parts) - _VNET_LEN


def open_tap(
    name: str,
    *,
    netns: str | None = None,
    create: bool = True,
    max_batch: int = 64,
    offload: bool = False,
) -> TapLink:
    """Open TAP device ``name`` (inside network namespace ``netns`` if given).

    An existing TAP (e.g. ``ip tuntap add dev tap0 mode tap``) is attached to; a
    missing one is created when ``create`` is true and then lives only as long as
    the returned link. A device that is down is brought up, since the kernel
    refuses writes to a TAP that is down. Raises LinkError with a message that
    says what to do when the device cannot be opened.

    ``offload`` turns on IFF_VNET_HDR with checksum and TSO4 offload for what the
    kernel sends us (large TCP segments, checksums trusted); a kernel that refuses
    it gives a clear LinkError.
    """
    try:
        raw_name = _netdev.check_ifname(name)
    except ValueError as exc:
        raise LinkError(str(exc)) from None
    where = _where(netns)
    # The namespace of a TAP is the one current at open() of /dev/net/tun, and
    # ioctls answer about the socket's namespace, so both happen in here.
    with in_netns(netns), _netdev.control_socket() as ctl:
        try:
            _netdev.get_ifindex(ctl, name)
            exists = True
        except OSError as exc:
            if exc.errno != errno.ENODEV:
                raise LinkError(f"cannot look up interface {name!r}: {exc}") from exc
            exists = False
        if not exists and not create:
            raise LinkError(
                f"TAP device {name!r} does not exist in {where} "
                f"(create it with `ip tuntap add dev {name} mode tap`)"
            )
        fd = _open_tun(name, raw_name, exists, where, offload)
        try:
            _netdev.bring_up(ctl, name)
            # Attaching gives the TAP its carrier; wait until the kernel will
            # really transmit on it (see wait_running), else its first replies
            # to us are dropped.
            _netdev.wait_running(ctl, name)
            mtu = _netdev.get_mtu(ctl, name)
        except PermissionError as exc:
            os.close(fd)
            raise LinkError(f"bringing TAP {name!r} up needs root (CAP_NET_ADMIN): {exc}") from exc
        except BaseException:
            os.close(fd)
            raise
    return TapLink(fd, name, mtu=mtu, netns=netns, max_batch=max_batch, offload=offload)


def _open_tun(name: str, raw_name: bytes, exists: bool, where: str, offload: bool) -> int:
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LinkError(
            f"{TUN_PATH} is missing (load the tun module with `modprobe tun`, "
            f"or create the node with `mknod {TUN_PATH} c 10 200`)"
        ) from None
    except PermissionError as exc:
        raise LinkError("TAP device needs root (CAP_NET_ADMIN)") from exc
    flags = _IFF_TAP | _IFF_NO_PI | (_IFF_VNET_HDR if offload else 0)
    ifr = struct.pack("16sH22x", raw_name, flags)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, ifr)
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.EPERM:
            raise LinkError("TAP device needs root (CAP_NET_ADMIN)") from exc
        if exc.errno == errno.EBUSY:
            raise LinkError(
                f"TAP device {name!r} in {where} is busy: another process has it open"
            ) from exc
        if exc.errno == errno.EINVAL and exists:
            # tun_set_iff() answers EINVAL when the name belongs to a device that
            # is not a single-queue TAP (a TUN, a multi-queue TAP, a veth ...).
            raise LinkError(
                f"interface {name!r} in {where} exists but is not a (single-queue) TAP device"
            ) from exc
        raise LinkError(f"cannot attach TAP device {name!r} in {where}: {exc}") from exc
    if offload:
        try:
            fcntl.ioctl(fd, _TUNSETOFFLOAD, _TUN_F_CSUM | _TUN_F_TSO4)
        except OSError as exc:
            os.close(fd)
            raise LinkError(
                f"TAP device {name!r} refused checksum/TSO offload ({exc}); run without offload"
            ) from exc
    return fd
