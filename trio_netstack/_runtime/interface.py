"""One interface of a stack: a link, its MAC, its neighbour cache and its two tasks.

``link_rx`` drains the device and sorts frames by EtherType (Linux does this in
the driver's NAPI poll, ``eth_type_trans``): IPv4 goes straight to the IPv4
task, ARP to this interface's ``ethernet`` task, which also owns ARP's timers
and sends the frames the device could not take at once (see the transmit path
in ``ip.py``). Each interface has its own neighbour cache, as Linux's
neighbour tables are per device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from ..link.base import Link
from ..proto.arp import ArpConfig, ArpMachine
from ..proto.counters import Counters
from ..proto.ethernet import KIND_ARP, KIND_IPV4, EthernetInput
from ..wire.addr import mac_to_str
from .channels import AlarmClock, Mailbox, send_upward
from .events import KICK, ArpInput, HostUnreachable, LayerMessage, Received, Transmit


class NetInterface:
    """A link the stack owns, with what is per device: MAC, MTU, ARP, transmit backlog."""

    def __init__(
        self,
        ifindex: int,
        name: str,
        link: Link,
        mac: bytes,
        mtu: int,
        arp: ArpConfig,
        queue: int,
        clock: AlarmClock,
        counters: Counters,
    ) -> None:
        self.ifindex = ifindex
        self.name = name
        self.link = link
        self.mac = mac
        self.mtu = mtu
        self.ethernet = EthernetInput(mac)
        self.arp = ArpMachine(mac, arp)
        self.inbox: Mailbox[LayerMessage] = Mailbox(queue, clock)
        self.counters = counters  # the stack's runtime counters
        self.tx_queued = 0  # frames waiting in the ethernet task for the device

    def __repr__(self) -> str:
        return f"<NetInterface {self.ifindex}: {self.name} {mac_to_str(self.mac)} mtu {self.mtu}>"

    # --- transmit ------------------------------------------------------------------

    def try_transmit(self, frames: list[bytes]) -> None:
        """Frames to the device now; what it cannot take goes to the ethernet task.

        Only for callers that may not wait (``can_transmit_now`` was true): if even the
        task's mailbox is full the frames are dropped and counted, as a full device
        queue drops (TCP recovers).
        """
        done = self.link.try_send(frames)
        if done < len(frames):
            self.counters.incr("tx_device_busy")
            rest = frames[done:]
            if send_upward(self.inbox, Transmit(rest)):
                self.tx_queued += len(rest)
            else:
                self.counters.incr("tx_queue_full", len(rest))

    async def transmit(self, frames: list[bytes]) -> None:
        """Frames to the device in order, waiting for room behind a busy device."""
        if not self.tx_queued:
            done = self.link.try_send(frames)
            if done >= len(frames):
                return
            frames = frames[done:]
            self.counters.incr("tx_device_busy")
        # The device is full (or cannot send synchronously): the ethernet task waits
        # for it. Waiting here for room in its mailbox is the backpressure.
        self.tx_queued += len(frames)
        try:
            await self.inbox.put(Transmit(frames))
        except BaseException:
            self.tx_queued -= len(frames)
            raise

    def kick(self) -> None:
        """Wake the ethernet task so it flushes frames produced outside it (GARP)."""
        send_upward(self.inbox, KICK)

    # --- tasks ---------------------------------------------------------------------

    async def link_rx(
        self, ip_inbox: Mailbox[LayerMessage], *, task_status: trio.TaskStatus[None]
    ) -> None:
        link = self.link
        classify = self.ethernet.classify_untrusted
        eth_box = self.inbox
        counters = self.counters
        ifindex = self.ifindex
        task_status.started()
        while True:
            try:
                batch = await link.receive_batch()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            while batch:
                to_ip: list[tuple[memoryview, int]] = []
                to_arp: list[memoryview] = []
                for data, flags in batch:
                    result = classify(data)
                    if result is None:
                        continue
                    if result[0] == KIND_IPV4:
                        to_ip.append((result[1], flags))
                    elif result[0] == KIND_ARP:
                        to_arp.append(result[1])
                if to_ip and not send_upward(ip_inbox, Received(ifindex, to_ip)):
                    counters.incr("ipv4_queue_full", len(to_ip))
                if to_arp and not send_upward(eth_box, ArpInput(to_arp)):
                    counters.incr("ethernet_queue_full", len(to_arp))
                # NAPI-style: while frames keep coming, poll once per scheduler pass
                # instead of re-arming the device's readiness (Link.receive_ready).
                await trio.lowlevel.checkpoint()
                try:
                    batch = link.receive_ready()
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return

    async def ethernet_task(
        self,
        report_unreachable: Callable[[HostUnreachable], None],
        *,
        task_status: trio.TaskStatus[None],
    ) -> None:
        """ARP (input, timers, resolutions) and the frames the device could not take."""
        arp = self.arp
        inbox = self.inbox
        link = self.link
        task_status.started()
        while True:
            deadline = arp.get_timer()
            messages = await inbox.get_batch(math.inf if deadline is None else deadline)
            now = trio.current_time()
            queued: list[bytes] = []  # counted in tx_queued by their producers
            for message in messages:
                if isinstance(message, ArpInput):
                    for payload in message.items:
                        arp.input_untrusted(payload, now)
                elif isinstance(message, Transmit):
                    queued.extend(message.frames)
            arp.handle_timer(now)
            failed = arp.take_unreachable()
            if failed:
                report_unreachable(HostUnreachable([p for _ip, ps in failed for p in ps]))
            # Packets released by a resolution and ARP's own frames go after what
            # waited for the device (all of it is in this round's batch or later).
            released = arp.take_frames()
            frames = queued + released if released else queued
            if not frames:
                continue
            self.tx_queued += len(released)
            try:
                done = link.try_send(frames)
                self.tx_queued -= done
                if done < len(frames):
                    rest = frames[done:]
                    await link.send_batch(rest)
                    self.tx_queued -= len(rest)
            except BaseException:
                self.tx_queued = 0  # the stack is stopping (or the device failed)
                raise
