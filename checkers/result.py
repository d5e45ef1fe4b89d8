"""What every checker returns: a verdict, counts, and the anomalies with the ops that prove them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.history import Op

Validity = bool | Literal["unknown"]

# How many anomalies of one kind keep their full operations in a result: enough to explain and
# draw, few enough that results.json of a history with a million lost writes stays readable.
MAX_EXAMPLES = 20


def example_limit(params: dict[str, Any] | None) -> int:
    """Examples kept per kind: ``params['max_examples']`` (the durability pass asks for every one)."""
    return int((params or {}).get("max_examples") or MAX_EXAMPLES)


@dataclass(slots=True)
class Anomaly:
    """One finding: its kind, a sentence a developer can read, and the operations behind it."""

    kind: str
    explanation: str
    ops: list[Op] = field(default_factory=list)
    key: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        d: dict[str, Any] = {"kind": self.kind, "key": self.key, "explanation": self.explanation,
                             "ops": [op.to_dict() for op in self.ops]}
        if self.details:
            d["details"] = self.details
        return d


@dataclass(slots=True)
class Result:
    """The verdict of one checker on one history."""

    name: str
    valid: Validity
    counts: dict[str, int] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "name": self.name,
            "valid": self.valid,
            "counts": dict(self.counts),
            "anomalies": [a.to_json() for a in self.anomalies],
            "details": self.details,
        }


def merge_validity(values: list[Validity]) -> Validity:
    """Jepsen's rule: any False makes False; otherwise any unknown makes unknown; else True."""
    if any(v is False for v in values):
        return False
    if any(v == "unknown" for v in values):
        return "unknown"
    return True


class AnomalyLog:
    """Collects anomalies per kind, counting all of them but keeping only the first examples."""

    def __init__(self, limit: int = MAX_EXAMPLES) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}
        self.examples: list[Anomaly] = []
        self._kept: dict[str, int] = {}

    def add(self, anomaly: Anomaly) -> None:
        """Count an anomaly and keep it if its kind has room left."""
        k = anomaly.kind
        self.counts[k] = self.counts.get(k, 0) + 1
        if self._kept.get(k, 0) < self.limit:
            self._kept[k] = self._kept.get(k, 0) + 1
            self.examples.append(anomaly)

    def add_lazy(self, kind: str, make: Callable[[], Anomaly]) -> None:
        """Count an anomaly of ``kind``, built by ``make()`` only if its kind has room left (a
        finding names operations that a checker reading a file fetches again: only for examples)."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self._kept.get(kind, 0) < self.limit:
            self._kept[kind] = self._kept.get(kind, 0) + 1
            self.examples.append(make())

    def count(self, kind: str) -> int:
        """How many anomalies of this kind were found."""
        return self.counts.get(kind, 0)
