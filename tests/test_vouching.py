"""A fetch answered after the worker had read a record vouches for that record's time."""

from __future__ import annotations

from streams.vouching import LatestSeen


def test_a_fetch_vouches_for_the_newest_time_noted_a_guard_before_it():
    seen = LatestSeen(guard_s=0.04)
    seen.note(10.00, 1_000)
    seen.note(10.05, 2_000)
    seen.note(10.10, 3_000)
    assert seen.before(9.99) is None  # answered before anything was read
    assert seen.before(10.03) is None  # possibly asked before the first note: within the guard
    assert seen.before(10.04) == 1_000
    assert seen.before(10.089) == 1_000
    assert seen.before(10.09) == 2_000
    assert seen.before(99.0) == 3_000


def test_a_note_that_saw_nothing_newer_keeps_the_older_moment():
    seen = LatestSeen(guard_s=0.0)
    seen.note(1.0, 500)
    seen.note(2.0, 500)  # nothing new since 1.0: the earlier, safer moment stands
    assert seen.times == [1.0] and seen.before(1.5) == 500


def test_old_notes_are_dropped_but_the_newest_is_kept():
    seen = LatestSeen(guard_s=0.0, keep_s=5.0)
    for t in range(20):
        seen.note(float(t), t)
    assert seen.times == [15.0, 16.0, 17.0, 18.0, 19.0] and seen.before(100.0) == 19
    seen.note(100.0, 20)
    assert seen.marks == [20] and seen.before(100.0) == 20
