"""Deterministic Trio scheduling for simulations (private Trio API; trio is pinned in pyproject).

Trio 0.35 leaves these to chance (trio/_core/_run.py):

* each scheduling batch is reversed with probability 1/2, drawn from the module's ``_r``
  (a ``random.Random``): we put a ``random.Random`` seeded from the simulation's seed in its
  place for the run (one that skips the shuffle call for a batch of one); and a
  batch's order is the order its tasks were rescheduled in, which follows the iteration order of
  sets of tasks (a cancel scope wakes the tasks it covers from a set, hashed by address): a seed
  of ``partition,kill,pause`` once came out different on its second run when two readers woken
  by one cancellation swapped places. We turn on Trio's own deterministic mode
  (``_ALLOW_DETERMINISTIC_SCHEDULING``, what its Hypothesis plugin sets): every batch is sorted
  by task creation order, then shuffled from ``_r``;
* deadlines that fall at the same instant (common under a virtual clock, where time stands still
  between jumps) are ordered by ``id(cancel_scope)``, a memory address: we replace
  ``Deadlines.add`` with one whose tie-breaker is a creation counter.

It also thins out Trio's I/O polls: every pass of the run loop asks the I/O manager for events
(an ``epoll`` system call with timeout 0 while tasks are runnable), a twentieth of a simulation's
cost, though a simulated world has no file descriptor that could become ready. Only every
:data:`POLL_EVERY`-th zero-timeout poll reaches the kernel (so Ctrl-C's wakeup still gets
through); a poll that may block is always made.

Every patch is undone after the run (the function :func:`make_deterministic` returns), and none
changes what Trio promises: the order of a batch and of equal deadlines is unspecified anyway. :func:`check_trio` refuses any other Trio version by name.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from heapq import heappush
from typing import Any

import trio
from trio._core._ki import enable_ki_protection

# The Trio release whose private scheduler internals this module relies on.
SUPPORTED_TRIO = "0.35."
# Trio's own deadline bookkeeping of a cancel scope, which make_deterministic replaces for a run.
_TRIO_DEADLINE_SYNC = trio._core._run.CancelScope._might_change_registered_deadline
# One zero-timeout I/O poll in this many reaches the kernel during a simulation.
POLL_EVERY = 64


class _BatchShuffler(random.Random):
    """Trio's batch shuffler for a simulation: random.Random's draws and orders, without the
    shuffle call for a batch of one task (most batches under a virtual clock; the call was
    about a percent of a seed)."""

    def shuffle(self, x: Any) -> None:  # type: ignore[override]
        """Shuffle ``x`` in place exactly as random.Random does (a batch of one draws nothing).

        The same draws and swaps as CPython's ``shuffle`` and ``_randbelow_with_getrandbits``
        (Lib/random.py, 3.8 to 3.13), with the per-element method call inlined;
        tests/unit/test_sim_speed_paths.py compares the two on many lists.
        """
        n = len(x)
        if n < 2:
            return
        getrandbits = self.getrandbits
        for i in range(n - 1, 0, -1):
            m = i + 1
            k = m.bit_length()
            j = getrandbits(k)
            while j >= m:
                j = getrandbits(k)
            x[i], x[j] = x[j], x[i]


class _DeadlineSync:
    """What ``CancelScope._might_change_registered_deadline`` does (Trio 0.35), as a plain context
    manager instead of a ``@contextmanager`` generator: when the ``with`` block ends, however it
    ends, the scope's deadline as the run's deadline heap knows it is brought up to date (taken
    out when the scope is closed or cancelled, moved when the deadline changed).

    Every cancel scope goes through it twice (enter, exit), and a seed opens some 27,000 of
    them (client timeouts, idle connection bounds, speculative read retries): the generator's
    context manager was about a fifth of a scope's cost. Same updates in the same order, so
    schedules are unchanged (tests/unit/test_simspeed_trio_paths.py).
    """

    __slots__ = ("_scope",)

    def __init__(self, scope: Any) -> None:
        self._scope = scope

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        scope = self._scope
        old = scope._registered_deadline
        new = math.inf if scope._cancel_status is None or scope._cancel_called else scope._deadline
        if old != new:
            scope._registered_deadline = new
            runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
            guest = runner.is_guest
            if guest:
                old_next = runner.deadlines.next_deadline()
            if old != math.inf:
                runner.deadlines.remove(old, scope)
            if new != math.inf:
                runner.deadlines.add(new, scope)
            if guest and runner.deadlines.next_deadline() != old_next:
                runner.force_guest_tick_asap()
        return False


# Trio decides whether Ctrl-C may interrupt by the code objects on the stack: ours are part of
# the scope machinery as the generator they replace was.
enable_ki_protection(_DeadlineSync.__exit__)


def _deadline_sync(scope: Any) -> _DeadlineSync:
    """CancelScope._might_change_registered_deadline during a simulation (a method: classes do not bind)."""
    return _DeadlineSync(scope)


class UnsupportedTrio(RuntimeError):
    """The installed Trio's scheduler internals are not the ones sim/ knows how to seed."""


def check_trio() -> Any:
    """The trio._core._run module, if it has what we patch (else UnsupportedTrio naming why)."""
    from trio._core import _run

    if not trio.__version__.startswith(SUPPORTED_TRIO):
        raise UnsupportedTrio(f"sim needs trio {SUPPORTED_TRIO}x (deterministic scheduling uses its "
                              f"private scheduler), found {trio.__version__}")
    needed = ("_r", "Deadlines", "_ALLOW_DETERMINISTIC_SCHEDULING", "TheIOManager", "Runner", "_NO_SEND",
              "CancelScope", "GLOBAL_RUN_CONTEXT")
    missing = [name for name in needed if not hasattr(_run, name)]
    if missing:
        raise UnsupportedTrio(f"trio._core._run lacks {', '.join(missing)}: cannot simulate deterministically")
    return _run


def make_deterministic(seed: int) -> Callable[[], None]:
    """Seed Trio's batch shuffling and make equal deadlines fire in creation order; returns the
    function that puts Trio's own tie-breaker back (call it after the run).

    Call before each ``trio.run`` of a simulation (the counter restarts too, so two runs of one
    seed in one process see the same tie-breakers).
    """
    _run = check_trio()
    original_r = _run._r
    _run._r = _BatchShuffler(seed)
    was_deterministic = _run._ALLOW_DETERMINISTIC_SCHEDULING
    _run._ALLOW_DETERMINISTIC_SCHEDULING = True
    counter = itertools.count()
    original = _run.Deadlines.add

    def add(self: Any, deadline: float, cancel_scope: Any) -> None:
        heappush(self._heap, (deadline, next(counter), cancel_scope))
        self._active += 1

    _run.Deadlines.add = add

    scope_class = _run.CancelScope
    original_sync = scope_class._might_change_registered_deadline
    scope_class._might_change_registered_deadline = _deadline_sync

    io_class = _run.TheIOManager
    original_get_events = io_class.get_events
    polls = itertools.count()

    def get_events(self: Any, timeout: float) -> Any:
        if timeout <= 0 and next(polls) % POLL_EVERY:
            return []  # what a poll that timed out returns
        return original_get_events(self, timeout)

    io_class.get_events = get_events

    def undo() -> None:
        _run._r = original_r
        _run._ALLOW_DETERMINISTIC_SCHEDULING = was_deterministic
        _run.Deadlines.add = original
        scope_class._might_change_registered_deadline = original_sync
        io_class.get_events = original_get_events

    return undo


class TaskHolds:
    """Pause as SIGSTOP does: a paused node's tasks stop running, timers included.

    While any node is paused, ``Runner.reschedule`` (private Trio API) looks at the context of
    each task it is asked to wake: a task of a paused node (its context's ``node_of`` variable
    names the node) is held, not put on the run queue; its timers still expire and its peers'
    messages still arrive and queue, but nothing of it runs until :meth:`resume` wakes every
    held task in the order it was held. No patch is in place while nothing is paused.
    """

    def __init__(self, node_of: Any) -> None:
        self.node_of = node_of  # a ContextVar[str]: which node a task belongs to
        self.held: dict[str, list[tuple[Any, Any]]] = {}
        self._original: Any = None

    def paused(self, node_id: str) -> bool:
        """Whether ``node_id``'s tasks are held."""
        return node_id in self.held

    def pause(self, node_id: str) -> None:
        """Hold ``node_id``'s tasks from now on."""
        if node_id in self.held:
            return
        self.held[node_id] = []
        if self._original is None:
            self._install()

    def resume(self, node_id: str) -> None:
        """Wake ``node_id``'s held tasks (in the order they were held) and stop holding them."""
        tasks = self.held.pop(node_id, None)
        if tasks is None:
            return
        original = self._original
        if not self.held:
            self._uninstall()
        runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
        for task, value in tasks:
            original(runner, task, value)

    def close(self) -> None:
        """Stop holding anything (the end of a run); held tasks are dropped with the run."""
        self.held.clear()
        self._uninstall()

    def _install(self) -> None:
        _run = check_trio()
        original = self._original = _run.Runner.reschedule
        held = self.held
        node_of = self.node_of
        no_send = _run._NO_SEND

        def reschedule(runner: Any, task: Any, next_send: Any = no_send) -> None:
            tasks = held.get(task.context.get(node_of, ""))
            if tasks is None:
                original(runner, task, next_send)
                return
            # What reschedule would clear: the task is no longer waiting, so a cancellation
            # must not try to abort its wait again while it is held.
            task._abort_func = None
            task.custom_sleep_data = None
            tasks.append((task, next_send))

        _run.Runner.reschedule = reschedule

    def _uninstall(self) -> None:
        if self._original is not None:
            trio._core._run.Runner.reschedule = self._original
            self._original = None
