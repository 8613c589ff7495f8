"""The worker loop's call timers: one heap of (when, call, kind) for every call's deadlines.

Arming or replacing a deadline pushes an entry; cancelling forgets it. An entry that was cancelled or
replaced is skipped when it reaches the top (lazy deletion, like asyncio's cancelled timer handles), so
arming and cancelling are O(log n), the next deadline is O(1), and the loop never scans its calls.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Literal

Kind = Literal["answer", "end", "play", "record"]
"""answer: Answer/Reject not received in time; end: maximum call duration; play: a playback overran its
files' length; record: the next silence/length check of a recording."""
KINDS: tuple[Kind, ...] = ("answer", "end", "play", "record")


@dataclass(frozen=True, slots=True)
class Due:
    """A deadline that has come: what to do to which call (`token`: the playback it was armed for)."""

    call: str
    kind: Kind
    token: int


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, Kind]] = []
        self._armed: dict[tuple[str, Kind], tuple[int, int]] = {}
        """(call, kind) -> (sequence number of its live heap entry, token)."""
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._armed)

    def arm(self, call: str, kind: Kind, at: float, token: int = 0) -> None:
        """Set `call`'s `kind` deadline to `at` (monotonic seconds), replacing an earlier one."""
        seq = next(self._seq)
        self._armed[(call, kind)] = (seq, token)
        heapq.heappush(self._heap, (at, seq, call, kind))

    def cancel(self, call: str, kind: Kind) -> None:
        self._armed.pop((call, kind), None)

    def cancel_call(self, call: str) -> None:
        for kind in KINDS:
            self._armed.pop((call, kind), None)

    def clear(self) -> None:
        self._heap.clear()
        self._armed.clear()

    def next_at(self) -> float | None:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due(self, now: float) -> list[Due]:
        """Remove and return every live deadline at or before `now`, earliest first."""
        heap, out = self._heap, []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._live(entry):
                _, _, call, kind = entry
                _, token = self._armed.pop((call, kind))
                out.append(Due(call, kind, token))
        return out

    def _live(self, entry: tuple[float, int, str, Kind]) -> bool:
        armed = self._armed.get((entry[2], entry[3]))
        return armed is not None and armed[0] == entry[1]
