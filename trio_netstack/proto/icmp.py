"""ICMP for a host: the echo responder, echo requests and replies, and error reports.

RFC 792 and RFC 1122 3.2.2. Echo requests to a broadcast or multicast address
are ignored (RFC 1122 3.2.2.6 allows it; Linux's icmp_echo_ignore_broadcasts=1
default), which keeps the stack out of smurf amplification.
"""

from __future__ import annotations

import errno

import attrs

from ..wire import icmp as wicmp
from ..wire import ipv4 as wip
from ..wire.addr import ip_to_str
from ..wire.errors import ParseError
from .counters import Counters
from .ipv4 import Delivery, IcmpRequest, OutDatagram
from .ratelimit import IcmpRateLimiter, RateLimitConfig

#: RFC 1812 4.3.2.3: an error quotes as much of the datagram as fits in 576 bytes.
MAX_ERROR_DATAGRAM = 576


@attrs.define(slots=True)
class EchoReply:
    src: int
    ident: int
    seq: int
    ttl: int
    payload: bytes
    received_at: float


@attrs.define(slots=True)
class IcmpErrorReport:
    """An ICMP error about a datagram we sent, with the quoted header parsed."""

    reporter: int  # who sent the error (our own address for local failures)
    type: int
    code: int
    original: wip.Ipv4Header  # the header of our datagram, as quoted
    quoted: bytes  # the quoted bytes after that header (at least 8, RFC 792)
    next_hop_mtu: int | None  # from "fragmentation needed" (RFC 1191 4)
    received_at: float

    @property
    def frag_needed(self) -> bool:
        """Destination unreachable, fragmentation needed (RFC 1191: news of the path MTU)."""
        return self.type == wicmp.DEST_UNREACHABLE and self.code == wicmp.UNREACH_FRAG_NEEDED

    @property
    def quoted_ports(self) -> tuple[int, int] | None:
        """For a quoted TCP or UDP header, its (source, destination) ports: both headers
        begin with them, and an error quotes at least 8 bytes (RFC 792)."""
        quoted = self.quoted
        if self.original.protocol in (wip.PROTO_TCP, wip.PROTO_UDP) and len(quoted) >= 4:
            return int.from_bytes(quoted[0:2], "big"), int.from_bytes(quoted[2:4], "big")
        return None

    @property
    def echo_id(self) -> int | None:
        """For a quoted echo request, its identifier."""
        quoted = self.quoted
        if (
            self.original.protocol == wip.PROTO_ICMP
            and len(quoted) >= 8
            and (quoted[0] == wicmp.ECHO_REQUEST)
        ):
            return int.from_bytes(quoted[4:6], "big")
        return None

    @property
    def echo_seq(self) -> int | None:
        if self.echo_id is None:
            return None
        return int.from_bytes(self.quoted[6:8], "big")


def error_to_errno(mtype: int, code: int) -> int:
    """The errno a socket reports for an ICMP error (RFC 1122 4.1.3.3; Linux's icmp_err_convert)."""
    if mtype == wicmp.DEST_UNREACHABLE:
        return {
            wicmp.UNREACH_NET: errno.ENETUNREACH,
            wicmp.UNREACH_HOST: errno.EHOSTUNREACH,
            wicmp.UNREACH_PROTOCOL: errno.ENOPROTOOPT,
            wicmp.UNREACH_PORT: errno.ECONNREFUSED,
            wicmp.UNREACH_FRAG_NEEDED: errno.EMSGSIZE,
        }.get(code, errno.EHOSTUNREACH)
    if mtype == wicmp.PARAMETER_PROBLEM:
        return errno.EPROTO
    return errno.EHOSTUNREACH  # time exceeded and the rest


# The C library's strerror() texts (glibc's, as os.strerror gives them on Linux) for the
# errnos above: the pure core may not import os.
_STRERROR = {
    errno.ENETUNREACH: "Network is unreachable",
    errno.EHOSTUNREACH: "No route to host",
    errno.ENOPROTOOPT: "Protocol not available",
    errno.ECONNREFUSED: "Connection refused",
    errno.EMSGSIZE: "Message too long",
    errno.EPROTO: "Protocol error",
}


def error_to_exception(mtype: int, code: int, reporter: int | None = None) -> OSError:
    """The exception a socket raises for an ICMP error: ``ConnectionRefusedError`` for
    port unreachable, else ``OSError`` with the errno of :func:`error_to_errno`.

    With ``reporter`` (the address that sent the error) the message names it, as UDP
    sockets report it; TCP reports the plain strerror text.
    """
    number = error_to_errno(mtype, code)
    message = _STRERROR.get(number, f"Unknown error {number}")
    if reporter is not None:
        message = f"{message} (ICMP from {ip_to_str(reporter)})"
    if number == errno.ECONNREFUSED:
        return ConnectionRefusedError(number, message)
    return OSError(number, message)


class IcmpMachine:
    """ICMP of one stack. Its outputs are taken with :meth:`take_datagrams` (to send),
    :meth:`take_echo_replies` and :meth:`take_errors` (reports for their owners)."""

    def __init__(self, rate_limit: RateLimitConfig | None = None) -> None:
        self.counters = Counters()
        self.limiter = IcmpRateLimiter(rate_limit)
        self.out: list[OutDatagram] = []
        self.echo_replies: list[EchoReply] = []
        self.errors: list[IcmpErrorReport] = []

    def take_datagrams(self) -> list[OutDatagram]:
        out = self.out
        if out:  # when empty, no new list (taken every round): do not modify it
            self.out = []
        return out

    def take_echo_replies(self) -> list[EchoReply]:
        out = self.echo_replies
        if out:  # when empty, no new list (taken every round): do not modify it
            self.echo_replies = []
        return out

    def take_errors(self) -> list[IcmpErrorReport]:
        out = self.errors
        if out:  # when empty, no new list (taken every round): do not modify it
            self.errors = []
        return out

    def report(self, request: IcmpRequest, now: float) -> bool:
        """Send the error another layer asked for about a datagram it received."""
        return self.send_error(
            request.type,
            request.code,
            request.header,
            request.data,
            now,
            to_broadcast=request.broadcast,
            rest=request.rest,
            from_destination=request.local,
        )

    def host_unreachable(self, packet: bytes, now: float) -> None:
        """One of our packets that ARP could not deliver (RFC 1122 3.2.2.1): reported
        locally as host unreachable, as if the error had come from its own source."""
        reporter = int.from_bytes(packet[12:16], "big") if len(packet) >= 20 else 0
        self.local_error(reporter, wicmp.DEST_UNREACHABLE, wicmp.UNREACH_HOST, packet, now)

    def input_untrusted(self, delivery: Delivery, now: float) -> None:
        counters = self.counters
        try:
            msg = wicmp.parse_untrusted(delivery.payload)
        except ParseError as exc:
            counters.incr(exc.reason)
            return
        header = delivery.header
        mtype = msg.type
        if mtype == wicmp.ECHO_REQUEST:
            if delivery.broadcast:
                counters.incr("echo_broadcast_ignored")
                return
            counters.incr("rx_echo_request")
            # RFC 792: the reply carries the same identifier, sequence and data.
            body = wicmp.build(wicmp.ECHO_REPLY, 0, msg.rest, msg.payload)
            self.out.append(OutDatagram(header.src, wip.PROTO_ICMP, body, src=header.dst))
            counters.incr("tx_echo_reply")
        elif mtype == wicmp.ECHO_REPLY:
            counters.incr("rx_echo_reply")
            self.echo_replies.append(
                EchoReply(
                    header.src, msg.echo_id, msg.echo_seq, header.ttl, bytes(msg.payload), now
                )
            )
        elif mtype in (wicmp.DEST_UNREACHABLE, wicmp.TIME_EXCEEDED, wicmp.PARAMETER_PROBLEM):
            report = self._parse_error(header.src, msg, now)
            if report is not None:
                counters.incr(f"rx_error_{mtype}_{msg.code}")
                self.errors.append(report)
        else:
            counters.incr("rx_other_type")

    def _parse_error(
        self, reporter: int, msg: wicmp.IcmpMessage, now: float
    ) -> IcmpErrorReport | None:
        try:
            # The quote is often cut short (RFC 792: header + 64 bits), so its total
            # length cannot be checked against what we have.
            quoted_header = _parse_quoted_untrusted(msg.payload)
        except ParseError as exc:
            self.counters.incr(f"error_quote_{exc.reason}")
            return None
        quoted = bytes(msg.payload[quoted_header.header_length :])
        if len(quoted) < 8:
            self.counters.incr("error_quote_short")
            return None
        mtu = None
        if msg.type == wicmp.DEST_UNREACHABLE and msg.code == wicmp.UNREACH_FRAG_NEEDED:
            mtu = msg.rest & 0xFFFF or None
        return IcmpErrorReport(reporter, msg.type, msg.code, quoted_header, quoted, mtu, now)

    def local_error(self, reporter: int, mtype: int, code: int, packet: bytes, now: float) -> None:
        """Report an error about one of our own packets that never left (ARP failed)."""
        try:
            header = _parse_quoted_untrusted(memoryview(packet))
        except ParseError:  # our own packet: cannot happen, but never crash on it
            self.counters.incr("local_error_unparsable")
            return
        quoted = bytes(packet[header.header_length : header.header_length + 8])
        self.counters.incr(f"local_error_{mtype}_{code}")
        self.errors.append(IcmpErrorReport(reporter, mtype, code, header, quoted, None, now))

    def send_error(
        self,
        mtype: int,
        code: int,
        header: wip.Ipv4Header,
        data: bytes | memoryview,
        now: float,
        *,
        to_broadcast: bool = False,
        rest: int = 0,
        from_destination: bool = True,
    ) -> bool:
        """Queue an ICMP error about the datagram ``header`` + ``data`` we received.

        Applies RFC 1122 3.2.2: never about an ICMP error, a datagram sent to a
        broadcast or multicast address, a non-first fragment, or one whose source is
        not a unicast host; then the rate limit. Returns whether one was queued.
        """
        counters = self.counters
        if to_broadcast:
            counters.incr("error_suppressed_broadcast")
            return False
        if header.flags_fragment & wip.OFFSET_MASK:
            counters.incr("error_suppressed_fragment")
            return False
        src = header.src
        if src in (0, 0xFFFFFFFF) or (src >> 28) == 0xE or (src >> 24) == 127:
            counters.incr("error_suppressed_source")
            return False
        if header.protocol == wip.PROTO_ICMP and (
            not data or data[0] in wicmp.ERROR_TYPES or data[0] > wicmp.MAX_KNOWN_TYPE
        ):
            counters.incr("error_suppressed_icmp_error")
            return False
        if not self.limiter.allow(src, now):
            counters.incr("error_rate_limited")
            return False
        quoted_header = wip.build_header(
            src=header.src,
            dst=header.dst,
            protocol=header.protocol,
            payload_length=header.total_length - header.header_length,
            ident=header.ident,
            ttl=header.ttl,
            tos=header.tos,
            flags_fragment=header.flags_fragment,
            options=header.options,
        )
        room = MAX_ERROR_DATAGRAM - wip.MIN_HEADER_LEN - wicmp.HEADER_LEN - len(quoted_header)
        body = wicmp.build(mtype, code, rest, quoted_header + bytes(data[:room]))
        # An error about a datagram for us comes from the address it was sent to; one
        # about a datagram we forward, from our address on the way back (RFC 1812 4.3.2.4).
        source = header.dst if from_destination else None
        self.out.append(OutDatagram(src, wip.PROTO_ICMP, body, src=source))
        counters.incr(f"tx_error_{mtype}_{code}")
        return True

    def echo_request(
        self, dst: int, ident: int, seq: int, payload: bytes, *, ttl: int | None = None
    ) -> OutDatagram:
        self.counters.incr("tx_echo_request")
        body = wicmp.build_echo(True, ident, seq, payload)
        return OutDatagram(dst, wip.PROTO_ICMP, body, ttl=ttl)


def _parse_quoted_untrusted(data: memoryview) -> wip.Ipv4Header:
    if len(data) < wip.MIN_HEADER_LEN:
        raise ParseError("ip_short", f"{len(data)} bytes")
    (vihl, tos, total, ident, ff, ttl, proto, csum, src, dst) = wip.HEADER.unpack_from(data)
    hlen = (vihl & 0xF) * 4
    if vihl >> 4 != 4 or hlen < wip.MIN_HEADER_LEN or hlen > len(data):
        raise ParseError("ip_bad_header_length", str(hlen))
    options = bytes(data[wip.MIN_HEADER_LEN : hlen])
    return wip.Ipv4Header(tos, total, ident, ff, ttl, proto, csum, src, dst, options)
