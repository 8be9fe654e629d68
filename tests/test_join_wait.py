"""``bench.join_wait``: the estimate of how early an exact rule could decide the camera join.
Its survivor-merge rule must never fix an assignment the whole chain would not give, and never
decide later than chain closure; it should decide most vehicles earlier."""

from __future__ import annotations

from bench.join_wait import waits


def test_survivor_merge_decides_early_and_never_differently():
    closure, merge, wrong = waits(400, seed=3)
    assert wrong == 0
    assert (merge <= closure).all()
    assert (merge < closure - 1.0).mean() > 0.3  # a second or more earlier for many vehicles
