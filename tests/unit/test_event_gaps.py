"""The event stream's gap rule: never publish past an id that may still commit."""

from __future__ import annotations

from swarm.runs.follow import GapTracker


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


def test_postgres_snapshots_settle_a_rolled_back_gap_at_once():
    g = GapTracker(gap_timeout=60.0)
    # Read 1: id 11 is missing; right after it, writer 500 is still in progress.
    assert g.advance(10, rows(12, 13), now=1000.0, snapshot=(500, 500)) == 10
    # Read 2 (writer 500 still running): still held.
    assert g.advance(10, rows(12, 13), now=1000.1, snapshot=(500, 502)) == 10
    # Writer 500 ended before read 3 (the snapshot after read 2 said so: xmin 501 > 500)...
    assert g.advance(10, rows(12, 13), now=1000.2, snapshot=(501, None)) == 10
    # ...so read 4, which still lacks 11, proves 11 rolled back. No timeout needed.
    assert g.advance(10, rows(12, 13), now=1000.3, snapshot=(503, None)) == 13


def test_a_gap_with_no_writer_in_progress_is_settled_by_the_next_read():
    g = GapTracker(gap_timeout=60.0)
    # Nothing in progress right after read 1: whatever held 11 has ended; if it committed, the
    # next read shows it, else it rolled back.
    assert g.advance(10, rows(12), now=1000.0, snapshot=(700, None)) == 10
    assert g.advance(10, rows(11, 12), now=1000.1, snapshot=(700, None)) == 12
    g2 = GapTracker(gap_timeout=60.0)
    g2.advance(10, rows(12), now=1000.0, snapshot=(700, None))
    assert g2.advance(10, rows(12), now=1000.1, snapshot=(700, None)) == 12


def test_a_writer_that_started_later_does_not_hold_an_older_gap():
    g = GapTracker(gap_timeout=60.0)
    assert g.advance(10, rows(12), now=1000.0, snapshot=(500, 500)) == 10
    # 500 ended; 900 (a newer transaction) runs now: it cannot hold id 11.
    assert g.advance(10, rows(12), now=1000.1, snapshot=(900, 900)) == 10
    assert g.advance(10, rows(12), now=1000.2, snapshot=(900, 900)) == 12
