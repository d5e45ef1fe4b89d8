"""Sequential specifications for the linearizability checker, in Porcupine's shape.

A model has ``init()`` (the initial state), ``step(state, input, output)`` (the next state, or
:data:`ILLEGAL` when the operation cannot have returned ``output`` in ``state``), ``partition``
(split the calls into independent sub-histories, P-compositionality) and ``describe_op`` /
``describe_state`` for explanations. States must be hashable: the search memoizes
(linearized set, state).

Unlike Porcupine's ``step`` returning ``(bool, state)``, ours returns the state or the
:data:`ILLEGAL` sentinel, which saves a tuple per step in the hot loop. Each call's ``input`` is
``(stepper, argument)`` so that ``step`` is one direct call to a small function per operation kind.

Indeterminate (``info``) operations: the checker gives them a return at +infinity, so "it never
happened" is the same as "it happened after everything else". Their steppers must therefore be
legal in every state: an ``info`` compare-and-set whose comparison fails simply changes nothing.
An ``info`` read constrains nothing and is dropped, as is every ``fail``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from harness.history import HistoryError, Op


class _Illegal:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ILLEGAL"


ILLEGAL: Any = _Illegal()
"""Returned by a stepper when the operation cannot have happened in that state."""

Stepper = Callable[[Any, Any, Any], Any]


def freeze(v: Any) -> Hashable:
    """A hashable version of a JSON value: lists become tuples, objects sorted item tuples."""
    if isinstance(v, list):
        return tuple(freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, freeze(x)) for k, x in v.items()))
    return v


@dataclass(slots=True)
class Call:
    """One operation as the search sees it: its input and output, and where it sits in time."""

    invoke: Op
    completion: Op | None
    key: Any
    stepper: Stepper
    arg: Any
    output: Any
    kind: str  # the describe-able operation kind: read, write, cas, append, add
    determinate: bool  # False when the completion was info (or missing)
    call_pos: int = 0
    ret_pos: float = 0.0


# --- steppers: (state, argument, output) -> next state or ILLEGAL ----------------------------


def _read(s: Any, a: Any, o: Any) -> Any:
    return s if s == o else ILLEGAL


def _write(s: Any, a: Any, o: Any) -> Any:
    return a


def _cas(s: Any, a: Any, o: Any) -> Any:
    return a[1] if s == a[0] else ILLEGAL


def _cas_maybe(s: Any, a: Any, o: Any) -> Any:
    # An info cas whose comparison fails behaves like a failed cas: nothing changes.
    return a[1] if s == a[0] else s


def _append(s: Any, a: Any, o: Any) -> Any:
    if s is None:
        return (a,)
    if type(s) is tuple:
        return s + (a,)
    return (s, a)  # appending to a scalar written by put: the scalar becomes the first element


def _add(s: int, a: int, o: Any) -> int:
    return s | a


def _read_mask(s: int, a: Any, o: int) -> Any:
    return s if s == o else ILLEGAL


class Model:
    """The interface every model implements (Porcupine's init/step/partition/describe)."""

    name = "model"

    def init(self) -> Hashable:
        """The state before any operation."""
        raise NotImplementedError

    def step(self, state: Any, input: tuple[Stepper, Any], output: Any) -> Any:
        """The state after ``input`` returned ``output`` in ``state``, or ILLEGAL."""
        return input[0](state, input[1], output)

    def prepare(self, invoke: Op, completion: Op | None) -> Call | None:
        """Turn an invocation and its completion into a Call, or None if it constrains nothing."""
        raise NotImplementedError

    def partition(self, calls: Iterable[Call]) -> dict[Any, list[Call]]:
        """Split calls into independently checkable sub-histories (per key)."""
        parts: dict[Any, list[Call]] = {}
        for c in calls:
            k = c.key
            try:
                parts.setdefault(k, []).append(c)
            except TypeError:  # an unhashable key (a list): group by its frozen form
                parts.setdefault(freeze(k), []).append(c)
        return parts

    def observed(self, call: Call) -> Iterable[Hashable]:
        """Tokens for what a call can see (values read, values a cas expects)."""
        return ()

    def effect(self, call: Call) -> Hashable | None:
        """The token an indeterminate call's effect would show as; None if it cannot be pruned.

        An info operation whose effect token no call observes can be placed at
        +infinity (never happened) without loss, so the checker drops it: applying it could only
        make later reads and compare-and-sets fail.
        """
        return None

    # How the search may prune overwrites: 0 never; 1 a state that no unlinearized call can
    # produce again must not be overwritten while an unlinearized call needs it; 2 the same,
    # but only for states that are not tuples (appends can rebuild a tuple in many ways).
    overwrite_rule = 0

    def needs(self, call: Call) -> Hashable | None:
        """The state (token) a determinate call can only be linearized in, if there is one."""
        return None

    def describe_op(self, call: Call) -> str:
        """A short human description of a call, e.g. ``write 3`` or ``read → 3``."""
        inv = call.invoke
        tail = "" if call.determinate else " (info: may or may not have happened)"
        if call.kind in ("read",):
            return f"{inv.f} → {self._show_output(call.output)}{tail}"
        if call.kind == "cas":
            return f"cas {call.arg[0]!r}→{call.arg[1]!r}{tail}"
        return f"{inv.f} {inv.value!r}{tail}"

    def describe_state(self, state: Any) -> str:
        """A short human description of a state."""
        return repr(state)

    def _show_output(self, output: Any) -> str:
        return repr(output)


def _bad(op: Op, model: str, msg: str) -> HistoryError:
    return HistoryError(f"op {op.index} ({op.f} on process {op.process!r}): {msg} for the {model} model")


class RegisterModel(Model):
    """A read/write/compare-and-set register per key (nil initially), as Knossos' cas-register."""

    name = "register"
    READ = ("read",)
    WRITE = ("write",)
    CAS = ("cas",)

    def __init__(self, initial: Any = None) -> None:
        self.initial = freeze(initial)

    def init(self) -> Hashable:
        """The register starts at nil (or the configured initial value)."""
        return self.initial

    def prepare(self, invoke: Op, completion: Op | None) -> Call | None:
        """Reads become output checks; writes and cas become state changes; fails are dropped."""
        t = completion.type if completion is not None else "info"
        if t == "fail":
            return None
        f = invoke.f
        det = t == "ok"
        if f in self.READ:
            if not det:
                return None  # an indeterminate read constrains nothing
            return Call(invoke, completion, invoke.key, _read, None, freeze(completion.value), "read", True)  # type: ignore[union-attr]
        if f in self.WRITE:
            return Call(invoke, completion, invoke.key, _write, freeze(invoke.value), None, "write", det)
        if f in self.CAS:
            v = invoke.value
            if not isinstance(v, list | tuple) or len(v) != 2:
                raise _bad(invoke, self.name, f"cas value must be [expected, new], got {v!r}")
            arg = (freeze(v[0]), freeze(v[1]))
            return Call(invoke, completion, invoke.key, _cas if det else _cas_maybe, arg, None, "cas", det)
        return self._other(invoke, completion, det)

    def _other(self, invoke: Op, completion: Op | None, det: bool) -> Call | None:
        raise _bad(invoke, self.name, f"unknown operation f={invoke.f!r} (expected read/write/cas)")

    def observed(self, call: Call) -> Iterable[Hashable]:
        """A read sees its value (and a list's elements); a cas sees its expected value."""
        if call.kind == "read":
            out = call.output
            if type(out) is tuple:
                # A put value that appends later extended still shows as the first element.
                return (out, *out, *(("element", x) for x in out))
            return (out,)
        if call.kind == "cas":
            return (call.arg[0],)
        return ()

    overwrite_rule = 1

    def needs(self, call: Call) -> Hashable | None:
        """A read needs the state it returned; a determinate cas the state it expected."""
        if not call.determinate:
            return None
        if call.kind == "read":
            return call.output
        if call.kind == "cas":
            return call.arg[0]
        return None

    def effect(self, call: Call) -> Hashable | None:
        """A write shows as its value, a cas as its new value, an append as its element."""
        if call.kind == "write":
            return call.arg
        if call.kind == "cas":
            return call.arg[1]
        if call.kind == "append":
            return ("element", call.arg)
        return None


class KVModel(RegisterModel):
    """A key-value map, one register per key: get, put, append (plus read/write/cas aliases)."""

    name = "kv"
    overwrite_rule = 2
    READ = ("get", "read")
    WRITE = ("put", "write")
    CAS = ("cas",)

    def _other(self, invoke: Op, completion: Op | None, det: bool) -> Call | None:
        if invoke.f == "append":
            return Call(invoke, completion, invoke.key, _append, freeze(invoke.value), None, "append", det)
        raise _bad(invoke, self.name, f"unknown operation f={invoke.f!r} (expected get/put/append)")


class SetModel(Model):
    """A grow-only set per key: add an element, read the whole set.

    States are ints used as bitsets over the elements seen in the history, so they hash in
    constant time however large the set grows.
    """

    name = "set"

    def __init__(self) -> None:
        # Element → bit, built while preparing this one check's calls.
        self._bits: dict[Hashable, int] = {}
        self._elements: list[Hashable] = []

    def _bit(self, element: Any) -> int:
        e = freeze(element)
        b = self._bits.get(e)
        if b is None:
            b = 1 << len(self._elements)
            self._bits[e] = b
            self._elements.append(e)
        return b

    def init(self) -> Hashable:
        """The empty set."""
        return 0

    def prepare(self, invoke: Op, completion: Op | None) -> Call | None:
        """Adds set a bit; ok reads must equal the set exactly; fails and info reads are dropped."""
        t = completion.type if completion is not None else "info"
        if t == "fail":
            return None
        det = t == "ok"
        if invoke.f == "add":
            return Call(invoke, completion, invoke.key, _add, self._bit(invoke.value), None, "add", det)
        if invoke.f == "read":
            if not det:
                return None
            v = completion.value  # type: ignore[union-attr]
            if v is None:
                v = []
            if not isinstance(v, list | tuple):
                raise _bad(invoke, self.name, f"a set read must return a list, got {v!r}")
            mask = 0
            for e in v:
                mask |= self._bit(e)
            return Call(invoke, completion, invoke.key, _read_mask, None, mask, "read", True)
        raise _bad(invoke, self.name, f"unknown operation f={invoke.f!r} (expected add/read)")

    def observed(self, call: Call) -> Iterable[Hashable]:
        """A read sees each element it returned (as its bit)."""
        if call.kind != "read":
            return ()
        m = call.output
        return [1 << i for i in range(m.bit_length()) if m >> i & 1]

    def effect(self, call: Call) -> Hashable | None:
        """An add shows as its element's bit."""
        return call.arg if call.kind == "add" else None

    def describe_state(self, state: Any) -> str:
        """The set's elements, sorted when they compare."""
        els = [e for i, e in enumerate(self._elements) if state >> i & 1]
        try:
            els.sort()  # type: ignore[type-var]
        except TypeError:
            pass
        return "{" + ", ".join(repr(e) for e in els) + "}"

    def _show_output(self, output: Any) -> str:
        return self.describe_state(output)


MODELS: dict[str, Callable[[], Model]] = {"register": RegisterModel, "kv": KVModel, "set": SetModel}
"""Model constructors by name; each check builds a fresh model (the set model keeps an index)."""


def make_model(name: str) -> Model:
    """A fresh model by name, or ValueError naming the choices."""
    try:
        return MODELS[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}") from None
