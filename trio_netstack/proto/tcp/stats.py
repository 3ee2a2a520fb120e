"""Per-connection counts and snapshots, computed from the machine alone.

:func:`connection_totals` is what the stack sums over every connection's life into
``Stack.statistics().tcp``; :func:`connection_statistics` is ``TcpStream.statistics()``: a
frozen snapshot with the state (its RFC 9293 name), the windows, RTT estimates (RFC 6298)
and the congestion controller's view.
"""

from __future__ import annotations

import attrs

from ...wire.addr import ip_to_str
from . import seq as S
from .connection import TcpConnection


def connection_totals(conn: TcpConnection) -> dict[str, int]:
    """The per-connection counts that are summed stack-wide in ``statistics().tcp``."""
    return {
        "segments_sent": conn.segments_sent,
        "segments_received": conn.segments_received,
        "bytes_sent": conn.bytes_sent,
        "bytes_received": conn.bytes_received,
        "retransmitted_segments": conn.retransmitted_segments,
        "rto_timeouts": conn.timeouts,
        "fast_retransmits": conn.fast_retransmits,
        "tlp_probes": conn.tlp_probes,
        "dupacks_received": conn.counters.get("dupacks_received", 0),
        "dsacks_received": conn.sb.dsacks,  # RFC 2883: spurious retransmissions seen
        "zero_window_probes": conn.zero_window_probes,
        "challenge_acks": conn.counters.get("challenge_acks", 0),
    }


@attrs.frozen
class TcpStatistics:
    """A snapshot of one connection (``stream.statistics()``)."""

    state: str  # the RFC 9293 name (TcpState.value)
    local: tuple[str, int]
    remote: tuple[str, int]
    mss: int
    snd_wnd: int
    rcv_wnd: int
    cwnd: int
    ssthresh: int
    srtt: float | None
    rttvar: float | None
    rto: float
    bytes_sent: int
    bytes_acked: int
    bytes_received: int
    segments_sent: int
    segments_received: int
    retransmitted_segments: int
    fast_retransmits: int
    timeouts: int
    zero_window_probes: int
    tlp_probes: int
    dsacks_received: int
    send_buffered: int
    receive_buffered: int
    window_scale: tuple[int, int]  # (ours, theirs)
    sack: bool
    timestamps: bool
    counters: dict[str, int]


def connection_statistics(conn: TcpConnection) -> TcpStatistics:
    return TcpStatistics(
        state=conn.state.value,
        local=(ip_to_str(conn.local_ip), conn.local_port),
        remote=(ip_to_str(conn.remote_ip), conn.remote_port),
        mss=conn.mss,
        snd_wnd=conn.snd_wnd,
        rcv_wnd=max(0, S.diff(conn.rcv_adv, conn.rcv.rcv_nxt)),
        cwnd=conn.cc.cwnd,
        ssthresh=conn.cc.ssthresh,
        srtt=conn.rtt.srtt,
        rttvar=conn.rtt.rttvar,
        rto=conn.rtt.rto,
        bytes_sent=conn.bytes_sent,
        bytes_acked=conn.bytes_acked,
        bytes_received=conn.bytes_received,
        segments_sent=conn.segments_sent,
        segments_received=conn.segments_received,
        retransmitted_segments=conn.retransmitted_segments,
        fast_retransmits=conn.fast_retransmits,
        timeouts=conn.timeouts,
        zero_window_probes=conn.zero_window_probes,
        tlp_probes=conn.tlp_probes,
        dsacks_received=conn.sb.dsacks,
        send_buffered=len(conn.sndbuf),
        receive_buffered=len(conn.rcv),
        window_scale=(conn.rcv_wscale, conn.snd_wscale),
        sack=conn.sack_ok,
        timestamps=conn.ts_ok,
        counters=dict(conn.counters),
    )
