"""`ivr qa`'s local ports: every SIPp caller gets a SIP port and the 4 media ports SIPp binds, never shared."""

from __future__ import annotations

import socket
from contextlib import ExitStack

from ivr.scenarios.ports import MEDIA_BLOCK, PortPool


def test_reserved_ports_are_free_aligned_and_never_handed_out_twice() -> None:
    pool = PortPool("127.0.0.1")
    held = [pool.reserve() for _ in range(8)]
    ports = [p for ports in held for p in ports.all()]
    assert len(ports) == len(set(ports)) == 8 * (1 + MEDIA_BLOCK)
    assert all(p.media % MEDIA_BLOCK == 0 for p in held)
    with ExitStack() as stack:  # SIPp can bind all of them at once: SIP, audio RTP/RTCP, video RTP/RTCP
        for port in ports:
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)).bind(("127.0.0.1", port))
    for p in held:
        pool.release(p)
    assert not pool._taken


class _FirstTries(PortPool):
    """Proposes `first` before the kernel's ephemeral picks, as the kernel may."""

    def __init__(self, first: int) -> None:
        super().__init__("127.0.0.1")
        self.first: list[int] = [first, first]

    def _ephemeral(self) -> int:
        return self.first.pop() if self.first else super()._ephemeral()


def test_a_block_with_a_port_another_process_holds_is_skipped() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        pool = _FirstTries(taken // MEDIA_BLOCK * MEDIA_BLOCK + 2)  # the block whose video RTP port is taken
        got = pool.reserve()
        assert not got.media <= taken < got.media + MEDIA_BLOCK and got.sip != taken
        assert not pool.first  # the taken block was proposed and refused
