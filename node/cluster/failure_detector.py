"""Phi-accrual failure detection over heartbeat arrival times (Hayashibara et al., as Cassandra does it).

Pure: every method takes ``now`` (seconds on a monotonic clock), so the detector can be unit
tested with made-up timelines and driven by a virtual clock later.

Like Cassandra's ``FailureDetector``/``ArrivalWindow``, inter-arrival times are modelled with the
exponential distribution, for which ``phi = -log10(P(silence >= t)) = t / mean * log10(e)``. That
is cheaper and more forgiving of jittery gossip than the normal distribution of the original
paper: gossip arrivals are bursty (a heartbeat may arrive through any peer) and the exponential
tail keeps a few late heartbeats from causing a conviction.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

# log10(e): turns t/mean (the natural-log survival of the exponential) into base-10 phi.
PHI_FACTOR = 1.0 / math.log(10.0)

# Cassandra's sample size: about 16 minutes of history at one arrival per second, long enough
# that a few odd intervals hardly move the mean, short enough to follow a changed gossip rate.
DEFAULT_WINDOW = 1000

# Cassandra's phi_convict_threshold default: at a 1 s mean, a silence of ~18 s convicts; with
# several gossip paths per node the mean is well below 1 s, so detection takes ~5-12 s.
DEFAULT_THRESHOLD = 8.0

# Cassandra seeds every window with one interval of twice the gossip interval: the right mean
# depends on the cluster size, and erring high (late detection) beats erring low (flapping).
DEFAULT_BOOTSTRAP_INTERVAL = 2.0

# Cassandra's fd_max_interval (2 s by default): longer gaps are pauses or outages, not samples of
# the healthy arrival rate, and recording them would inflate the mean and slow later detection.
DEFAULT_MAX_INTERVAL = 2.0


@dataclass
class _ArrivalWindow:
    """Recent inter-arrival intervals for one endpoint and the time of the last arrival."""

    size: int
    intervals: deque[float] = field(init=False)
    total: float = 0.0
    last: float | None = None

    def __post_init__(self) -> None:
        self.intervals = deque()

    def add(self, interval: float) -> None:
        """Record one interval, evicting the oldest when full."""
        if len(self.intervals) >= self.size:
            self.total -= self.intervals.popleft()
        self.intervals.append(interval)
        self.total += interval

    def mean(self) -> float:
        """Mean of the recorded intervals."""
        return self.total / len(self.intervals)


class PhiAccrualFailureDetector:
    """Suspicion level (phi) per endpoint from the intervals between its heartbeats."""

    def __init__(
        self,
        window: int = DEFAULT_WINDOW,
        threshold: float = DEFAULT_THRESHOLD,
        bootstrap_interval: float = DEFAULT_BOOTSTRAP_INTERVAL,
        max_interval: float = DEFAULT_MAX_INTERVAL,
    ) -> None:
        if window < 1:
            raise ValueError(f"failure detector window must be >= 1, got {window}")
        if threshold <= 0:
            raise ValueError(f"phi threshold must be positive, got {threshold}")
        if bootstrap_interval <= 0 or max_interval <= 0:
            raise ValueError("bootstrap_interval and max_interval must be positive")
        self.window = window
        self.threshold = threshold
        self.bootstrap_interval = bootstrap_interval
        self.max_interval = max_interval
        self._windows: dict[str, _ArrivalWindow] = {}

    def heartbeat(self, node_id: str, now: float) -> None:
        """Record that evidence of ``node_id`` being alive arrived at ``now``."""
        w = self._windows.get(node_id)
        if w is None:
            w = self._windows[node_id] = _ArrivalWindow(self.window)
        if w.last is None:
            w.add(self.bootstrap_interval)
        else:
            interval = now - w.last
            if interval < 0:
                return  # out-of-order report; the later arrival already counted
            if interval <= self.max_interval:
                w.add(interval)
        w.last = now

    def phi(self, node_id: str, now: float) -> float:
        """Suspicion that ``node_id`` is down; 0.0 for an endpoint never heard from."""
        w = self._windows.get(node_id)
        if w is None or w.last is None:
            return 0.0
        mean = w.mean()
        if mean <= 0:
            # Only zero-length intervals recorded (simultaneous reports): any silence is
            # infinitely suspicious under that model, which would convict on the next check.
            mean = 1e-3
        return max(0.0, now - w.last) / mean * PHI_FACTOR

    def is_available(self, node_id: str, now: float) -> bool:
        """Whether phi is at or below the conviction threshold."""
        return self.phi(node_id, now) <= self.threshold

    def mean_interval(self, node_id: str) -> float | None:
        """The mean recorded interval for ``node_id``, or ``None`` if never heard from."""
        w = self._windows.get(node_id)
        return w.mean() if w is not None and w.intervals else None

    def window_stats(self, node_id: str) -> tuple[float, float, int] | None:
        """(mean, longest, count) of the intervals recorded for ``node_id``, or ``None`` if never
        heard from: what Cassandra's FailureDetector MBean dumps per endpoint (its arrival
        windows), so an operator can see what the detector learnt. Every recorded interval is at
        most ``max_interval`` by construction; a longer one is an outage counted as a sample."""
        w = self._windows.get(node_id)
        if w is None or not w.intervals:
            return None
        return w.mean(), max(w.intervals), len(w.intervals)

    def last_arrival(self, node_id: str) -> float | None:
        """When the last heartbeat of ``node_id`` arrived, or ``None``."""
        w = self._windows.get(node_id)
        return None if w is None else w.last

    def remove(self, node_id: str) -> None:
        """Forget ``node_id`` (a restarted process has a new arrival pattern to learn)."""
        self._windows.pop(node_id, None)
