"""The event stream's gap rule: never publish past an id that may still commit."""

from __future__ import annotations

from swarm.api.events import GapTracker


def rows(*ids, ts=1000.0):
    return [{"id": i, "ts": ts} for i in ids]


def test_contiguous_ids_advance_the_frontier():
    assert GapTracker().advance(10, rows(11, 12, 13), now=1000.0) == 13


def test_a_gap_holds_everything_after_it():
    g = GapTracker(gap_timeout=2.0)
    assert g.advance(10, rows(11, 13, 14), now=1000.0) == 11
    # The gap fills (the slower transaction committed): everything passes, in order.
    assert g.advance(11, rows(12, 13, 14), now=1000.5) == 14


def test_a_gap_that_never_fills_is_given_up_after_the_timeout():
    g = GapTracker(gap_timeout=2.0)
    assert g.advance(10, rows(12, 13), now=1000.0) == 10
    assert g.advance(10, rows(12, 13), now=1001.9) == 10
    assert g.advance(10, rows(12, 13), now=1002.0) == 13


def test_the_timeout_runs_per_blocked_row_not_per_gap():
    g = GapTracker(gap_timeout=2.0)
    g.advance(10, rows(12, 14), now=1000.0)
    # 11 arrives late; 13 is still missing. Row 14 has waited since t=1000, so it passes at 1002.
    assert g.advance(10, rows(11, 12, 14), now=1001.0) == 12
    assert g.advance(12, rows(14), now=1002.0) == 14


def test_old_rows_behind_a_gap_pass_at_once():
    # A follower starting late: a gap behind rows written long ago can only be a rollback.
    g = GapTracker(gap_timeout=2.0, stale_after=10.0)
    assert g.advance(10, rows(12, 13, ts=900.0), now=1000.0) == 13
