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
An ``info`` read constrains nothing and is dropped, as is every ``fail`` (unless the register
model is told that a failed compare-and-set is an observation, as Porcupine's etcd model says).

Models take options that match the peers' conventions (docs/history-format.md): the initial
value (``init``), whether a nil read is a value or "unknown" (``nil_read``, Knossos: unknown),
whether a failed cas observes the register (``failed_cas``, Porcupine: observe; Knossos:
ignore), and whether kv ``append`` concatenates strings or builds a list (``kv_append``,
Porcupine: string from "").
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from harness.history import HistoryError, Op



def show_value(value: Any) -> str:
    """A value as explanations show it: ``nil`` for absent (None), Python's repr otherwise."""
    return "nil" if value is None else repr(value)

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


def _cas_failed(s: Any, a: Any, o: Any) -> Any:
    # A failed cas as an observation (Porcupine's etcd model): the register did not hold `expected`.
    return s if s != a[0] else ILLEGAL


def _append_str(s: Any, a: Any, o: Any) -> Any:
    # Porcupine's kv model: append concatenates strings (a nil key counts as "").
    if s is None:
        return a
    if type(s) is str:
        return s + a
    return ILLEGAL  # a non-string value written by put cannot be appended to


def _acquire(s: Any, a: Any, o: Any) -> Any:
    return ILLEGAL if s else True


def _release(s: Any, a: Any, o: Any) -> Any:
    return False if s else ILLEGAL


def _txn(s: Any, a: Any, o: Any) -> Any:
    # a: compiled micro-ops (is_write, register index, value); nil reads were dropped when compiled.
    st = None
    for w, i, v in a:
        if w:
            if st is None:
                st = list(s)
            st[i] = v
        elif (s[i] if st is None else st[i]) != v:
            return ILLEGAL
    return s if st is None else tuple(st)


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


PURE_KINDS = frozenset({"read", "cas-failed"})
"""Call kinds that never change the state: the search commits them as soon as they are legal."""

NIL_READS = ("value", "unknown")
FAILED_CAS = ("ignore", "observe")
KV_APPENDS = ("list", "string")


class Model:
    """The interface every model implements (Porcupine's init/step/partition/describe)."""

    name = "model"

    def init(self) -> Hashable:
        """The state before any operation."""
        raise NotImplementedError

    def init_part(self, key: Any) -> Hashable:
        """The state before any operation of the sub-history ``key`` (from :meth:`partition`)."""
        return self.init()

    def indeterminate(self, call: Call) -> Call | None:
        """The same call with its outcome unknown (as if it had completed ``info``), or None.

        The explanation of an invalid history checks prefixes of it, in which every operation
        that completed later is cut back to this.
        """
        c = self.prepare(call.invoke, None)
        if c is not None:
            c.call_pos = call.call_pos
            c.ret_pos = float("inf")
        return c

    def tokens_exact(self, calls: list[Call]) -> bool:
        """Whether :meth:`needs` and :meth:`effect` describe every way these calls reach a state.

        The overwrite pruning and the dropping of unobserved info calls rely on it; a model
        whose states can be rebuilt in ways no token shows (strings built by appends) says no.
        """
        return True

    def focus(self, key: Any) -> None:
        """Called before describing the states of the sub-history ``key`` (for explanations)."""

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
        if call.kind == "cas-failed":
            return f"cas {call.arg[0]!r}→{call.arg[1]!r} failed (observed ≠ {call.arg[0]!r})"
        if call.kind == "delete":
            return f"{inv.f}{tail}"
        return f"{inv.f} {inv.value!r}{tail}"

    def describe_state(self, state: Any) -> str:
        """A short human description of a state (an absent value is ``nil``, as in the report)."""
        return show_value(state)

    def _show_output(self, output: Any) -> str:
        return show_value(output)


def _bad(op: Op, model: str, msg: str) -> HistoryError:
    return HistoryError(f"op {op.index} ({op.f} on process {op.process!r}): {msg} for the {model} model")


class RegisterModel(Model):
    """A read/write/compare-and-set register per key (nil initially), as Knossos' cas-register.

    ``init`` is every key's initial value; ``nil_read="unknown"`` makes an ok read of nil
    constrain nothing (Knossos: "we don't know what the read was"); ``failed_cas="observe"``
    makes a failed cas an observation that the register did not hold the expected value
    (Porcupine's etcd model) instead of an operation that did not happen (Knossos, Jepsen).
    A ``delete`` sets the register back to nil, so a read after it returns nil. (A nil state is
    never a token a read needs, see ``needs``, so a delete's nil effect needs no token either.)
    """

    name = "register"
    READ = ("read",)
    WRITE = ("write",)
    CAS = ("cas",)
    DELETE = ("delete",)

    def __init__(self, init: Any = None, nil_read: str = "value", failed_cas: str = "ignore") -> None:
        if nil_read not in NIL_READS:
            raise ValueError(f"nil_read must be one of {', '.join(NIL_READS)}, got {nil_read!r}")
        if failed_cas not in FAILED_CAS:
            raise ValueError(f"failed_cas must be one of {', '.join(FAILED_CAS)}, got {failed_cas!r}")
        self.initial = freeze(init)
        self.nil_unknown = nil_read == "unknown"
        self.observe_failed_cas = failed_cas == "observe"

    def init(self) -> Hashable:
        """The register starts at nil (or the configured initial value)."""
        return self.initial

    def prepare(self, invoke: Op, completion: Op | None) -> Call | None:
        """Reads become output checks; writes and cas become state changes; fails are dropped."""
        t = completion.type if completion is not None else "info"
        f = invoke.f
        if t == "fail":
            if self.observe_failed_cas and f in self.CAS:
                return Call(invoke, completion, invoke.key, _cas_failed, self._cas_arg(invoke), None, "cas-failed", True)
            return None
        det = t == "ok"
        if f in self.READ:
            if not det:
                return None  # an indeterminate read constrains nothing
            out = completion.value  # type: ignore[union-attr]
            if out is None and self.nil_unknown:
                return None  # Knossos: a nil read is "value unknown"
            return Call(invoke, completion, invoke.key, _read, None, freeze(out), "read", True)
        if f in self.WRITE:
            return Call(invoke, completion, invoke.key, _write, freeze(invoke.value), None, "write", det)
        if f in self.DELETE:
            return Call(invoke, completion, invoke.key, _write, None, None, "delete", det)
        if f in self.CAS:
            return Call(invoke, completion, invoke.key, _cas if det else _cas_maybe, self._cas_arg(invoke), None, "cas", det)
        return self._other(invoke, completion, det)

    def _cas_arg(self, invoke: Op) -> tuple[Hashable, Hashable]:
        v = invoke.value
        if not isinstance(v, list | tuple) or len(v) != 2:
            raise _bad(invoke, self.name, f"cas value must be [expected, new], got {v!r}")
        return (freeze(v[0]), freeze(v[1]))

    def _other(self, invoke: Op, completion: Op | None, det: bool) -> Call | None:
        raise _bad(invoke, self.name, f"unknown operation f={invoke.f!r} (expected read/write/cas/delete)")

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
    """A key-value map, one register per key: get, put, append (plus read/write/cas aliases).

    ``kv_append="list"`` (ringlab's store) makes append build a list of the appended values;
    ``"string"`` concatenates strings, as Porcupine's kv model does (with ``init=""``).
    """

    name = "kv"
    overwrite_rule = 2
    READ = ("get", "read")
    WRITE = ("put", "write")
    CAS = ("cas",)

    def __init__(self, init: Any = None, nil_read: str = "value", failed_cas: str = "ignore",
                 kv_append: str = "list") -> None:
        super().__init__(init, nil_read, failed_cas)
        if kv_append not in KV_APPENDS:
            raise ValueError(f"kv_append must be one of {', '.join(KV_APPENDS)}, got {kv_append!r}")
        self.string_append = kv_append == "string"

    def _other(self, invoke: Op, completion: Op | None, det: bool) -> Call | None:
        if invoke.f == "append":
            if self.string_append:
                if not isinstance(invoke.value, str):
                    raise _bad(invoke, self.name, f"append value must be a string with string appends, got {invoke.value!r}")
                return Call(invoke, completion, invoke.key, _append_str, invoke.value, None, "append", det)
            return Call(invoke, completion, invoke.key, _append, freeze(invoke.value), None, "append", det)
        raise _bad(invoke, self.name, f"unknown operation f={invoke.f!r} (expected get/put/append)")

    def tokens_exact(self, calls: list[Call]) -> bool:
        """String appends rebuild a string in many ways ("a"+"bc", "ab"+"c"): no tokens then."""
        return not (self.string_append and any(c.kind == "append" for c in calls))


class SetModel(Model):
    """A grow-only set per key: add an element, read the whole set.

    States are ints used as bitsets over the elements seen in the history, so they hash in
    constant time however large the set grows.
    """

    name = "set"

    def __init__(self, atomic_reads: bool = False) -> None:
        # False: checkers/linearizable.py judges each element on its own (checkers/set_elements.py);
        # True: this model's whole-set search, for stores whose reads are snapshots.
        self.atomic_reads = bool(atomic_reads)
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


class MutexModel(Model):
    """A lock per key (one lock when the key is nil): acquire and release, as Knossos' mutex.

    Acquiring a held lock or releasing a free one is illegal; failed operations are dropped
    and info ones may or may not have happened. States are True (held) and False (free).
    """

    name = "mutex"
    overwrite_rule = 1

    def init(self) -> Hashable:
        """Every lock starts free."""
        return False

    def prepare(self, invoke: Op, completion: Op | None) -> Call | None:
        """Acquire and release become state changes; fails are dropped."""
        t = completion.type if completion is not None else "info"
        if t == "fail":
            return None
        det = t == "ok"
        if invoke.f == "acquire":
            return Call(invoke, completion, invoke.key, _acquire, None, None, "acquire", det)
        if invoke.f == "release":
            return Call(invoke, completion, invoke.key, _release, None, None, "release", det)
        raise _bad(invoke, self.name, f"unknown operation f={invoke.f!r} (expected acquire/release)")

    def observed(self, call: Call) -> Iterable[Hashable]:
        """An acquire sees the lock free, a release sees it held."""
        return (call.kind == "release",)

    def needs(self, call: Call) -> Hashable | None:
        """A determinate acquire needs the lock free, a release needs it held."""
        return (call.kind == "release") if call.determinate else None

    def effect(self, call: Call) -> Hashable | None:
        """An acquire leaves the lock held, a release leaves it free."""
        return call.kind == "acquire"

    def describe_op(self, call: Call) -> str:
        """``acquire`` or ``release``, marked when indeterminate."""
        return call.kind + ("" if call.determinate else " (info: may or may not have happened)")

    def describe_state(self, state: Any) -> str:
        """``held`` or ``free``."""
        return "held" if state else "free"


_MICRO_READS = ("r", "read")
_MICRO_WRITES = ("w", "write")


class MultiRegisterModel(Model):
    """Registers named by keys, read and written by transactions, as Knossos' multi-register.

    An operation's value is a list of micro-operations ``[f, k, v]``: ``[r k v]`` reads v
    from register k (nil: unknown, always legal), ``[w k v]`` writes v; an ok operation's
    completion carries the values its reads saw. ``init`` is every register's initial value,
    or a JSON object of initial values by key (others start at nil).

    P-compositionality: registers that no transaction touches together are independent
    objects, so the history is split into the connected groups of registers (per key when
    every transaction touches one register; the whole history when all are linked).
    """

    name = "multi-register"
    F = ("txn", "read", "write")

    def __init__(self, init: Any = None) -> None:
        self.initial = init
        # Filled by partition(): register → (sub-history, index in its state tuple).
        self._index: dict[Hashable, tuple[Any, int]] = {}
        self._inits: dict[Any, tuple[Any, ...]] = {}
        self._names: dict[Any, tuple[Any, ...]] = {}
        self._focus: Any = None

    def init(self) -> Hashable:
        """No registers: states are per sub-history (see init_part)."""
        return ()

    def init_part(self, key: Any) -> Hashable:
        """The initial value of each register of sub-history ``key``."""
        return self._inits.get(key, ())

    def _initial_of(self, register: Any) -> Hashable:
        init = self.initial
        if isinstance(init, dict):
            if register in init:
                return freeze(init[register])
            return freeze(init.get(str(register)))  # JSON object keys are strings
        return freeze(init)

    def prepare(self, invoke: Op, completion: Op | None) -> Call | None:
        """A transaction becomes its micro-operations; fails, nil reads and info reads are dropped."""
        t = completion.type if completion is not None else "info"
        if t == "fail":
            return None
        if invoke.f not in self.F:
            raise _bad(invoke, self.name, f"unknown operation f={invoke.f!r} (expected txn)")
        det = t == "ok"
        value = invoke.value
        if det and isinstance(completion.value, list | tuple):  # type: ignore[union-attr]
            value = completion.value  # type: ignore[union-attr]
        if not isinstance(value, list | tuple):
            raise _bad(invoke, self.name, f"a txn value must be a list of [f k v] micro-ops, got {value!r}")
        mops = []
        writes = False
        for m in value:
            if not isinstance(m, list | tuple) or len(m) != 3 or m[0] not in _MICRO_READS + _MICRO_WRITES:
                raise _bad(invoke, self.name, f"micro-op {m!r} is not [r k v] or [w k v]")
            w = m[0] in _MICRO_WRITES
            if not w and (m[2] is None or not det):
                continue  # nil reads (and every read of an info txn) are always legal
            writes = writes or w
            mops.append((w, freeze(m[1]), freeze(m[2])))
        if not mops:
            return None
        if not writes and not det:
            return None
        keys = tuple(dict.fromkeys(k for _, k, _ in mops))
        return Call(invoke, completion, keys, _txn, tuple(mops), None, "txn" if writes else "read", det)

    def partition(self, calls: Iterable[Call]) -> dict[Any, list[Call]]:
        """Split into groups of registers linked by transactions; compile micro-ops to indexes."""
        calls = list(calls)
        parent: dict[Hashable, Hashable] = {}

        def find(k: Hashable) -> Hashable:
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        for c in calls:
            first = c.key[0]
            for k in c.key:
                parent.setdefault(k, k)
            r0 = find(first)
            for k in c.key[1:]:
                r = find(k)
                if r != r0:
                    parent[r] = r0
        groups: dict[Hashable, list[Hashable]] = {}
        for k in parent:
            groups.setdefault(find(k), []).append(k)
        part_of: dict[Hashable, Any] = {}
        for members in groups.values():
            members.sort(key=repr)
            part = members[0] if len(members) == 1 else tuple(members)
            self._names[part] = tuple(members)
            self._inits[part] = tuple(self._initial_of(k) for k in members)
            for i, k in enumerate(members):
                self._index[k] = (part, i)
                part_of[k] = part
        parts: dict[Any, list[Call]] = {}
        for c in calls:
            self._compile(c)
            parts.setdefault(part_of[c.key[0]], []).append(c)
        return parts

    def _compile(self, c: Call) -> None:
        c.arg = tuple((w, self._index[k][1], v) for w, k, v in c.arg)

    def indeterminate(self, call: Call) -> Call | None:
        """The info version of a transaction: only its writes, compiled like the original."""
        c = super().indeterminate(call)
        if c is not None:
            self._compile(c)
        return c

    def focus(self, key: Any) -> None:
        """Name the registers of sub-history ``key`` when describing states."""
        self._focus = key

    def describe_op(self, call: Call) -> str:
        """The micro-ops as Knossos writes them, e.g. ``txn [r x 1] [w y 2]``."""
        inv = call.invoke
        value = inv.value
        if call.determinate and call.completion is not None and isinstance(call.completion.value, list | tuple):
            value = call.completion.value
        shown = " ".join(f"[{m[0]} {m[1]!r} {m[2]!r}]" for m in value if isinstance(m, list | tuple) and len(m) == 3)
        return f"{inv.f} {shown}" + ("" if call.determinate else " (info: may or may not have happened)")

    def describe_state(self, state: Any) -> str:
        """The registers and their values, e.g. ``{'x': 1, 'y': nil}``."""
        names = self._names.get(self._focus)
        if names is None or len(names) != len(state):
            return repr(state)
        return "{" + ", ".join(f"{k!r}: {show_value(v)}" for k, v in zip(names, state)) + "}"


MODELS: dict[str, Callable[..., Model]] = {"register": RegisterModel, "kv": KVModel, "set": SetModel,
                                           "mutex": MutexModel, "multi-register": MultiRegisterModel}
"""Model constructors by name; each check builds a fresh model (the set model keeps an index)."""

MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "register": ("init", "nil_read", "failed_cas"),
    "kv": ("init", "nil_read", "failed_cas", "kv_append"),
    "set": ("atomic_reads",),
    "mutex": (),
    "multi-register": ("init",),
}
"""The options each model takes (checker params of the same names)."""


def make_model(name: str, **options: Any) -> Model:
    """A fresh model by name with its options, or ValueError naming the choices or the option."""
    try:
        ctor = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}") from None
    allowed = MODEL_OPTIONS[name]
    for k in options:
        if k not in allowed:
            raise ValueError(f"the {name} model takes no {k.replace('_', '-')} option"
                             + (f" (it takes {', '.join(a.replace('_', '-') for a in allowed)})" if allowed else ""))
    return ctor(**options)


def model_options(params: dict[str, Any], name: str) -> dict[str, Any]:
    """The options for model ``name`` found in checker params (others are left out)."""
    return {k: params[k] for k in MODEL_OPTIONS.get(name, ()) if k in params}
