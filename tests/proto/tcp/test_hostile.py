"""Hostile and random segments against every state: nothing but counted drops and RSTs.

A malformed or malicious segment must never raise out of the machine (that would
kill the connection task, and with it the stack) nor break its invariants.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_netstack.proto.ipv4 import Delivery
from trio_netstack.proto.tcp import seq as S
from trio_netstack.proto.tcp.connection import TcpConfig, TcpConnection, TcpState
from trio_netstack.proto.tcp.demux import TcpDemux
from trio_netstack.proto.tcp.isn import IsnGenerator
from trio_netstack.testing.tcp import A_IP, A_PORT, B_IP, B_PORT, connected, parse
from trio_netstack.wire import ipv4 as wip
from trio_netstack.wire import tcp as wtcp

segments = st.lists(
    st.tuples(
        st.integers(0, 0xFFFFFFFF),  # seq, as an offset from rcv_nxt when small
        st.integers(0, 0xFFFFFFFF),  # ack
        st.integers(0, 0xFF),  # flags
        st.integers(0, 0xFFFF),  # window
        st.binary(max_size=64),  # payload
        st.one_of(st.none(), st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))),
        st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF)), max_size=3),
        st.booleans(),  # make seq/ack relative to the connection (plausible) or absolute
    ),
    min_size=1,
    max_size=25,
)


def check_invariants(conn: TcpConnection) -> None:
    assert S.le(conn.snd_una, conn.snd_nxt) or conn.state is TcpState.CLOSED
    assert S.le(conn.snd_nxt, conn.snd_max)
    assert len(conn.sndbuf) <= conn.config.send_buffer
    assert conn.rack.pipe() >= 0
    assert conn.sb.sacked_bytes() >= 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=segments, start_state=st.sampled_from(["established", "closing", "sending"]))
def test_random_segments_never_escape(script: list, start_state: str) -> None:  # type: ignore[type-arg]
    a, _b, _wire = connected()
    if start_state == "closing":
        a.app_close(0.5)
    elif start_state == "sending":
        a.app_send(bytes(20000), 0.5)
    a.out.clear()
    now = 1.0
    for raw_seq, raw_ack, flags, window, payload, ts, sack, relative in script:
        seq, ack = raw_seq, raw_ack
        if relative:
            seq = (int(a.rcv.rcv_nxt) + raw_seq % 70000 - 35000) & 0xFFFFFFFF
            ack = (int(a.snd_una) + raw_ack % 70000 - 35000) & 0xFFFFFFFF
        raw = wtcp.build(
            B_IP,
            A_IP,
            B_PORT,
            A_PORT,
            seq,
            ack,
            flags,
            window,
            payload,
            timestamp=ts,
            sack_blocks=tuple(sack),
        )
        a.on_segment(parse(raw, B_IP, A_IP), now)
        check_invariants(a)
        timer = a.get_timer()
        if timer is not None and timer <= now + 0.5:
            a.handle_timer(max(timer, now))
            check_invariants(a)
        a.app_receive(1 << 16, now)
        a.out.clear()
        now += 0.05


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=segments,
    batch=st.integers(2, 8),
    start_state=st.sampled_from(["established", "sending"]),
)
def test_random_segment_batches_never_escape(
    script: list,  # type: ignore[type-arg]
    batch: int,
    start_state: str,
) -> None:
    # The runtime feeds what one device read delivered as one batch (on_segments, with
    # its single ACK at the end): hostile batches must be as harmless as single segments.
    a, _b, _wire = connected()
    if start_state == "sending":
        a.app_send(bytes(20000), 0.5)
    a.out.clear()
    now = 1.0
    for first in range(0, len(script), batch):
        built = []
        for raw_seq, raw_ack, flags, window, payload, ts, sack, relative in script[
            first : first + batch
        ]:
            seq, ack = raw_seq, raw_ack
            if relative:
                seq = (int(a.rcv.rcv_nxt) + raw_seq % 70000 - 35000) & 0xFFFFFFFF
                ack = (int(a.snd_una) + raw_ack % 70000 - 35000) & 0xFFFFFFFF
            raw = wtcp.build(
                B_IP, A_IP, B_PORT, A_PORT, seq, ack, flags, window, payload,
                timestamp=ts, sack_blocks=tuple(sack),
            )  # fmt: skip
            built.append(parse(raw, B_IP, A_IP))
        a.on_segments(built, now)
        assert not a.batching and not a.ack_at_end
        check_invariants(a)
        timer = a.get_timer()
        if timer is not None and timer <= now + 0.5:
            a.handle_timer(max(timer, now))
            check_invariants(a)
        a.app_receive(1 << 16, now)
        a.out.clear()
        now += 0.05


@settings(max_examples=100, deadline=None)
@given(script=segments)
def test_random_segments_to_a_listener(script: list) -> None:  # type: ignore[type-arg]
    demux: TcpDemux[str] = TcpDemux(
        TcpConfig(), IsnGenerator(bytes(32)), random.Random(1).randrange
    )
    listener = demux.listen(0, A_PORT, 4, "svc")
    now = 1.0
    for seq, ack, flags, window, payload, ts, sack, _relative in script:
        raw = wtcp.build(
            B_IP,
            A_IP,
            B_PORT,
            A_PORT,
            seq,
            ack,
            flags,
            window,
            payload,
            timestamp=ts,
            sack_blocks=tuple(sack),
        )
        packet = (
            wip.build_header(src=B_IP, dst=A_IP, protocol=6, payload_length=len(raw), ident=1) + raw
        )
        header, data = wip.parse_untrusted(packet)
        found = demux.input_untrusted(Delivery(header, data, 0, False), False, 1460, now)
        if found is not None:
            conn, seg = found
            conn.on_segment(seg, now)
            check_invariants(conn)
            conn.out.clear()
        demux.out.clear()
        now += 0.05
    assert len(listener.pending) + len(listener.ready) <= listener.backlog
