"""The neighbour cache with explicit time: resolution, retries, give-up, ageing, limits."""

from __future__ import annotations

from trio_netstack.proto.arp import DELAY, PROBE, REACHABLE, STALE, ArpConfig, ArpMachine
from trio_netstack.testing.golden import KERNEL_MAC, LINUX_ARP_REQUEST, STACK_MAC
from trio_netstack.wire import arp, ethernet
from trio_netstack.wire.addr import BROADCAST_MAC, ip_from_str

ME = ip_from_str("192.0.2.2")
PEER = ip_from_str("192.0.2.1")
OTHER = ip_from_str("192.0.2.9")


def machine(**cfg: object) -> ArpMachine:
    m = ArpMachine(STACK_MAC, ArpConfig(**cfg))  # type: ignore[arg-type]
    m.add_address(ME, 0.0)
    m.frames_out.clear()
    return m


def frames(m: ArpMachine) -> list[tuple[ethernet.EthernetHeader, bytes]]:
    out = [(h, bytes(p)) for h, p in map(ethernet.parse_untrusted, m.frames_out)]
    m.frames_out.clear()
    return out


def reply_from_peer(mac: bytes = KERNEL_MAC) -> bytes:
    return arp.build(arp.OP_REPLY, mac, PEER, STACK_MAC, ME)


def test_gratuitous_arp_on_address() -> None:
    m = ArpMachine(STACK_MAC)
    m.add_address(ME, 0.0)
    [(eth, body)] = frames(m)
    pkt = arp.parse_untrusted(body)
    assert eth.dst == BROADCAST_MAC
    assert (pkt.op, pkt.spa, pkt.tpa, pkt.sha) == (arp.OP_REQUEST, ME, ME, STACK_MAC)
    assert m.counters["gratuitous_sent"] == 1


def test_answers_linux_request_and_learns_sender() -> None:
    m = machine()
    m.input_untrusted(LINUX_ARP_REQUEST[14:], 1.0)
    [(eth, body)] = frames(m)
    pkt = arp.parse_untrusted(body)
    assert eth.dst == KERNEL_MAC and eth.ethertype == ethernet.ETHERTYPE_ARP
    assert (pkt.op, pkt.sha, pkt.spa, pkt.tha, pkt.tpa) == (
        arp.OP_REPLY,
        STACK_MAC,
        ME,
        KERNEL_MAC,
        PEER,
    )
    [n] = m.neighbours()
    assert (n.ip, n.mac, n.state) == (PEER, KERNEL_MAC, STALE)


def test_does_not_answer_for_others() -> None:
    m = machine()
    m.input_untrusted(arp.build(arp.OP_REQUEST, KERNEL_MAC, PEER, bytes(6), OTHER), 1.0)
    assert frames(m) == []
    assert m.neighbours() == []  # RFC 826: not the target, no entry created
    assert m.counters["not_for_us"] == 1


def test_resolution_queues_then_flushes_in_order() -> None:
    m = machine()
    m.output(PEER, b"first", 0.0)
    m.output(PEER, b"second", 0.1)
    [(eth, body)] = frames(m)
    assert eth.dst == BROADCAST_MAC
    assert arp.parse_untrusted(body).tpa == PEER
    m.input_untrusted(reply_from_peer(), 0.2)
    out = frames(m)
    assert [bytes(p).rstrip(b"\0") for _, p in out] == [b"first", b"second"]
    assert all(h.dst == KERNEL_MAC and h.ethertype == ethernet.ETHERTYPE_IPV4 for h, _ in out)
    assert m.neighbours()[0].state == REACHABLE
    assert m.queued_packets() == 0


def test_retries_then_gives_up_with_host_unreachable() -> None:
    m = machine(retrans_time=1.0, multicast_probes=3)
    m.output(OTHER, b"lost", 0.0)
    assert len(frames(m)) == 1
    assert m.get_timer() == 1.0
    m.handle_timer(1.0)
    m.handle_timer(2.0)
    assert len(frames(m)) == 2  # three requests in all
    assert m.unreachable == []
    m.handle_timer(2.999)
    assert m.unreachable == []
    m.handle_timer(3.0)
    assert m.unreachable == [(OTHER, [b"lost"])]
    assert m.neighbours() == []
    assert m.counters["resolution_failed"] == 1
    assert m.queued_packets() == 0


def test_reachable_ages_to_stale_then_delay_probe_and_removal() -> None:
    m = machine(reachable_time=30.0, delay_time=5.0, retrans_time=1.0, unicast_probes=3)
    m.output(PEER, b"x", 0.0)
    m.input_untrusted(reply_from_peer(), 0.5)
    frames(m)
    m.output(PEER, b"y", 20.0)  # still reachable: sent, no probe scheduled
    assert len(frames(m)) == 1 and m.neighbours()[0].state == REACHABLE
    m.output(PEER, b"z", 40.0)  # stale now: sent at once, then DELAY
    assert len(frames(m)) == 1 and m.neighbours()[0].state == DELAY
    m.handle_timer(44.9)
    assert frames(m) == [] and m.neighbours()[0].state == DELAY
    m.handle_timer(45.0)
    [(eth, body)] = frames(m)
    assert eth.dst == KERNEL_MAC  # unicast probe (RFC 4861 7.3.3 PROBE)
    assert arp.parse_untrusted(body).tpa == PEER
    assert m.neighbours()[0].state == PROBE
    m.handle_timer(46.0)
    m.handle_timer(47.0)
    assert len(frames(m)) == 2
    m.handle_timer(48.0)
    assert m.neighbours() == []
    assert m.counters["probe_failed"] == 1


def test_probe_answered_returns_to_reachable() -> None:
    m = machine()
    m.output(PEER, b"x", 0.0)
    m.input_untrusted(reply_from_peer(), 0.0)
    m.output(PEER, b"y", 40.0)
    m.handle_timer(45.0)
    m.input_untrusted(reply_from_peer(), 45.1)
    assert m.neighbours()[0].state == REACHABLE
    m.handle_timer(100.0)
    assert m.counters.get("probe_failed", 0) == 0


def test_stale_entries_collected() -> None:
    m = machine(stale_gc_time=60.0, gc_interval=30.0)
    m.input_untrusted(LINUX_ARP_REQUEST[14:], 0.0)
    assert len(m.neighbours()) == 1
    m.handle_timer(30.0)
    assert len(m.neighbours()) == 1
    m.handle_timer(90.0)
    assert m.neighbours() == []
    assert m.get_timer() is None


def test_queue_and_table_limits() -> None:
    m = machine(max_entries=4, max_queue_per_entry=2)
    for i in range(3):
        m.output(PEER, bytes([i]), 0.0)
    assert m.queued_packets() == 2
    assert m.counters["queue_full_drop"] == 1
    for i in range(10):
        m.output(OTHER + i, b"p", 0.0)
    assert len(m.neighbours()) == 4  # incomplete entries are never evicted
    assert m.counters["table_full"] == 7
    assert [ip for ip, _ in m.unreachable] == [OTHER + i for i in range(3, 10)]


def test_hostile_arp_ignored() -> None:
    m = machine()
    # Someone claims our address: counted, never learnt.
    m.input_untrusted(arp.build(arp.OP_REPLY, KERNEL_MAC, ME, STACK_MAC, ME), 0.0)
    # A broadcast sender MAC is forged.
    m.input_untrusted(arp.build(arp.OP_REQUEST, BROADCAST_MAC, PEER, bytes(6), ME), 0.0)
    # Truncated and wrong hardware type.
    m.input_untrusted(LINUX_ARP_REQUEST[14:30], 0.0)
    m.input_untrusted(b"\x00\x06" + LINUX_ARP_REQUEST[16:], 0.0)
    assert frames(m) == [] and m.neighbours() == []
    assert m.counters["address_conflict"] == 1
    assert m.counters["bad_sender_mac"] == 1
    assert m.counters["arp_short"] == 1
    assert m.counters["arp_unsupported"] == 1


def test_address_probe_is_answered() -> None:
    m = machine()
    m.input_untrusted(arp.build(arp.OP_REQUEST, KERNEL_MAC, 0, bytes(6), ME), 0.0)
    [(eth, body)] = frames(m)
    assert eth.dst == KERNEL_MAC
    assert arp.parse_untrusted(body).op == arp.OP_REPLY
    assert m.neighbours() == []
