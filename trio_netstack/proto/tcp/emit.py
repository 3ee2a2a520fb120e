"""Segment emission: every segment the connection sends is built by :meth:`_emit`.

It fills in what every segment carries the same way: the ACK field (which also settles a
pending delayed ACK), the window (:meth:`_advertise`), timestamps (RFC 7323 3) and SACK
blocks (RFC 2018 4, a D-SACK first as RFC 2883 4 asks), and appends the bytes to
:attr:`out`.
"""

from __future__ import annotations

from ...wire import tcp as wtcp
from .isn import tsval
from .seq import Seq
from .tcb import Tcb


class EmitMixin(Tcb):
    __slots__ = ()

    def _emit(
        self,
        now: float,
        seq_no: Seq,
        ack: int,
        flags: int,
        payload: bytes | bytearray | memoryview = b"",
        *,
        with_ack: bool = True,
        syn_options: bool = False,
    ) -> None:
        if (with_ack and not flags & wtcp.RST) or flags & wtcp.ACK:
            flags |= wtcp.ACK
            ack = self.rcv.rcv_nxt
            self.last_ack_sent = self.rcv.rcv_nxt
            self.delack_at = None
            self.ack_now = False
            self.ack_at_end = False
            self.unacked_segments = 0
        window = 0
        if not flags & wtcp.RST:
            window = (
                min(self.config.receive_buffer, 0xFFFF) if flags & wtcp.SYN else (self._advertise())
            )
        options: dict[str, object] = {}
        if syn_options:
            self._offer_options(options, now)
        elif self.ts_ok and not flags & wtcp.RST:
            options["timestamp"] = (tsval(now, self.ts_offset), self.ts_recent)
        if self.sack_ok and flags & wtcp.ACK and not flags & wtcp.SYN:
            room = 4 if not self.ts_ok else 3  # 40 option bytes: 3 blocks beside timestamps
            blocks: tuple[tuple[int, int], ...] = ()
            if self.dsack is not None:
                # RFC 2883 4: the duplicate range goes first, reported once.
                blocks = ((int(self.dsack[0]), int(self.dsack[1])),)
                self.dsack = None
            if self.rcv.has_gaps:
                blocks += self.rcv.sack_blocks(room - len(blocks))
            if blocks:
                options["sack_blocks"] = blocks
        segment = wtcp.build(
            self.local_ip,
            self.remote_ip,
            self.local_port,
            self.remote_port,
            seq_no,
            ack,
            flags,
            window,
            payload,
            partial_checksum=self.csum_partial,
            **options,  # type: ignore[arg-type]
        )
        self.out.append(segment)
        self.segments_sent += 1
        self.bytes_sent += len(payload)

    def _send_ack(self, now: float) -> None:
        self._emit(now, self.snd_max, 0, wtcp.ACK)
