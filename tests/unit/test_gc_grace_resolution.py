"""A purge may come up to one second before gc_grace by the history's clock: deletion times are whole seconds."""

from __future__ import annotations

from checkers import gcgrace


def test_a_purge_within_the_deletion_times_second_is_allowed_and_no_earlier() -> None:
    grace = gcgrace.Grace(3, {}, [])
    delete_at = 23_470_000_000  # ns on the history's clock
    # The store truncates the delete's time to its second, so it may purge 2.03 s after it.
    assert grace.passed(delete_at, delete_at + 2_580_000_000)
    assert grace.passed(delete_at, delete_at + 3_000_000_000)
    assert not grace.passed(delete_at, delete_at + 1_900_000_000)
    assert not gcgrace.Grace(None, {}, []).passed(delete_at, delete_at + 10**12)
