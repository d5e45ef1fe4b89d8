"""Deterministic Trio scheduling for simulations (private Trio API; trio is pinned in pyproject).

Trio 0.35 leaves two things to chance (trio/_core/_run.py):

* each scheduling batch is reversed with probability 1/2, drawn from the module's ``_r``
  (a ``random.Random``): we seed ``_r`` from the simulation's seed before ``trio.run``;
* deadlines that fall at the same instant (common under a virtual clock, where time stands still
  between jumps) are ordered by ``id(cancel_scope)``, a memory address: we replace
  ``Deadlines.add`` with one whose tie-breaker is a creation counter.

Both are what Trio's own Hypothesis plugin touches (``_r`` and the batch order), and neither
changes behaviour outside a simulation's process beyond the order of equal deadlines, which Trio
does not promise anyway. :func:`check_trio` refuses any other Trio version by name.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from heapq import heappush
from typing import Any

import trio

# The Trio release whose private scheduler internals this module relies on.
SUPPORTED_TRIO = "0.35."


class UnsupportedTrio(RuntimeError):
    """The installed Trio's scheduler internals are not the ones sim/ knows how to seed."""


def check_trio() -> Any:
    """The trio._core._run module, if it has what we patch (else UnsupportedTrio naming why)."""
    from trio._core import _run

    if not trio.__version__.startswith(SUPPORTED_TRIO):
        raise UnsupportedTrio(f"sim needs trio {SUPPORTED_TRIO}x (deterministic scheduling uses its "
                              f"private scheduler), found {trio.__version__}")
    if not hasattr(_run, "_r") or not hasattr(_run, "Deadlines"):
        raise UnsupportedTrio("trio._core._run has no _r or Deadlines: cannot make scheduling deterministic")
    return _run


def make_deterministic(seed: int) -> Callable[[], None]:
    """Seed Trio's batch shuffling and make equal deadlines fire in creation order; returns the
    function that puts Trio's own tie-breaker back (call it after the run).

    Call before each ``trio.run`` of a simulation (the counter restarts too, so two runs of one
    seed in one process see the same tie-breakers).
    """
    _run = check_trio()
    _run._r.seed(seed)
    counter = itertools.count()
    original = _run.Deadlines.add

    def add(self: Any, deadline: float, cancel_scope: Any) -> None:
        heappush(self._heap, (deadline, next(counter), cancel_scope))
        self._active += 1

    _run.Deadlines.add = add

    def undo() -> None:
        _run.Deadlines.add = original

    return undo
