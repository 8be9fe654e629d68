"""What a caught-up partition vouches for: inputs complete up to the newest time seen on others.

The match buffers know an input partition complete up to the newest record read from it, less
the publication slack (``MatchBuffers.marks``). A quiet partition — a few passages a second —
then holds its sites back until its next record comes, a quarter of a second of wall time at
demo load. But devices publish within the slack of capture on one clock, so once the worker has
read records of event time ``M`` on other inputs, every record captured before ``M - slack`` is
in the broker; a partition whose fetch was answered after that, and read to its end, holds none
of them unread. So it is complete up to ``M`` less the slack too (Flink calls the quiet case an
idle source; here it is judged from the broker's answer, not from a timeout). ``M`` is the
newest time read on at least two partitions (``MatchBuffers.latest``), so that one device whose
clock runs ahead does not move every quiet partition with it.

"After that" is judged on the wall clock: ``LatestSeen`` notes, at each round, the newest event
time the worker had buffered, and answers for a fetch answered at ``fetched_s`` the newest note
taken at least ``guard_s`` before it (a fetch in flight at the note's moment was asked before
the record was read; ``guard_s`` lets it come back first). The fetch that brought the record
itself, or one answered by another broker a network delay earlier, can only err by that delay,
well inside the slack.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field


@dataclass
class LatestSeen:
    """Notes of (wall clock, newest input event time buffered by then), a few seconds' worth."""

    guard_s: float
    keep_s: float = 10.0
    times: list[float] = field(default_factory=list)
    marks: list[int] = field(default_factory=list)

    def note(self, now_s: float, mark_us: int) -> None:
        if self.marks and mark_us <= self.marks[-1]:
            return  # nothing newer seen: the older note answers for it with less guard
        self.times.append(now_s)
        self.marks.append(mark_us)
        old = bisect_right(self.times, now_s - self.keep_s)
        if old and old < len(self.times):
            del self.times[:old], self.marks[:old]

    def before(self, fetched_s: float) -> int | None:
        """The newest event time that a fetch answered at ``fetched_s`` vouches for, if any."""
        i = bisect_right(self.times, fetched_s - self.guard_s)
        return self.marks[i - 1] if i else None
