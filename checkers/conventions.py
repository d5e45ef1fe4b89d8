"""Which peer's conventions a history follows, told from its format, and the model options they mean.

ringlab, Jepsen, Knossos and Porcupine agree on what linearizability is but not on a few
conventions of their models (docs/history-format.md has the table):

- the initial value of a register or key: nil everywhere, except Porcupine's kv model ("");
- a read of nil: the value nil (ringlab, Porcupine's etcd model: the key does not exist), or
  "value unknown" (Knossos' models, and so Jepsen's linearizable checker);
- a failed compare-and-set: an operation that did not happen (Jepsen, Knossos, ringlab), or an
  observation that the register did not hold the expected value (Porcupine's etcd model);
- kv append: a list of the appended values (ringlab's store) or string concatenation (Porcupine).

A history file often says whose it is: Jepsen log lines are what Porcupine's etcd tests read;
EDN op maps without ``:index`` are Knossos' test data, or Porcupine's kv test logs when their
operations are get/put/append; EDN maps with ``:index`` are a Jepsen ``history.edn``; JSONL is
ringlab's own. :func:`detect` tells which, so ``harness check`` uses that peer's conventions
unless told otherwise, and says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from harness.history import Op, history_format, read_history

# How many operations are looked at to tell the model a history's operations belong to.
_HEAD_OPS = 2_000
# How much of an EDN file's head is searched for an :index key.
_HEAD_CHARS = 1 << 14


@dataclass(frozen=True, slots=True)
class Convention:
    """A peer's conventions: its name, what in the file told us, and the model options."""

    name: str  # ringlab, jepsen, knossos, porcupine-kv, porcupine-etcd
    peer: str  # who follows it, for a person
    evidence: str  # what in the file says so
    options: dict[str, Any] = field(default_factory=dict)  # model options (checker params)

    def describe(self, model: str, params: dict[str, Any]) -> str:
        """One line: whose conventions, why, and the options in force for ``model``."""
        from checkers.models import MODEL_OPTIONS

        shown = []
        for k in MODEL_OPTIONS.get(model, ()):
            v = params.get(k, DEFAULTS[k])
            flag = "--" + k.replace("_", "-")
            shown.append((flag if v else f"no {flag}") if isinstance(v, bool) else f"{flag} {_show(v)}")
        opts = f"; in force: {', '.join(shown)}" if shown else ""
        return f"conventions: {self.peer} ({self.evidence}){opts}"


DEFAULTS: dict[str, Any] = {"init": None, "nil_read": "value", "failed_cas": "ignore", "kv_append": "list",
                           "atomic_reads": False}
"""ringlab's own conventions (every model option's default)."""

RINGLAB = Convention("ringlab", "ringlab", "JSONL history", {})
JEPSEN = Convention("jepsen", "Jepsen (Knossos' models)", "EDN op maps with :index, as Jepsen's history.edn",
                    {"nil_read": "unknown", "failed_cas": "ignore"})
KNOSSOS = Convention("knossos", "Knossos", "EDN op maps without :index, as Knossos' test data",
                     {"nil_read": "unknown", "failed_cas": "ignore"})
PORCUPINE_KV = Convention("porcupine-kv", "Porcupine's kv model",
                          "EDN get/put/append op maps without :index, as Porcupine's kv test logs",
                          {"kv_append": "string", "init": ""})
PORCUPINE_ETCD = Convention("porcupine-etcd", "Porcupine's etcd model",
                            "Jepsen log lines 'jepsen.util - P :type :f value', as Porcupine's etcd tests read them",
                            {"nil_read": "value", "failed_cas": "observe"})


def _show(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, str) and v in ("value", "unknown", "ignore", "observe", "list", "string"):
        return v
    import json

    return json.dumps(v)


def infer_model(ops: Iterable[Op]) -> str:
    """The model the operations' names belong to: mutex, multi-register, set, kv or register."""
    fs = {op.f for op in ops if op.is_client()}
    if fs & {"acquire", "release"}:
        return "mutex"
    if "txn" in fs:
        return "multi-register"
    if "add" in fs:
        return "set"
    if fs & {"get", "put", "append"}:
        return "kv"
    return "register"


def detect(path: str | os.PathLike[str]) -> tuple[Convention, str]:
    """The conventions a history file follows and the model its operations imply.

    Reads the head of the file only; a file that cannot be read is left to the checkers, which
    say why (this returns ringlab's conventions for it).
    """
    fmt = history_format(path)
    try:
        head = list(islice(read_history(path), _HEAD_OPS))
    except (ValueError, OSError, RecursionError):
        return RINGLAB, "register"
    model = infer_model(head)
    if fmt == "jepsen-log":
        return PORCUPINE_ETCD, model
    if fmt == "edn":
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(_HEAD_CHARS)
        except OSError:
            text = ""
        if re.search(r"[{,\s]:index\s", text):
            return JEPSEN, model
        if model == "kv" and not any(op.f == "cas" for op in head):
            return PORCUPINE_KV, model
        return KNOSSOS, model
    return RINGLAB, model
