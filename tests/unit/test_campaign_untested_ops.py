"""A workload operation that was tried again and again and never completed ok leaves its part of
the history free of anomalies because none happened: the campaign checker says unknown and names
it, while the harness's own final reads and a few failures of a rare operation do not count."""

from __future__ import annotations

from checkers import campaign
from harness.history import Op


def _client(i: int, f: str, type_: str, *, final: bool = False, error: str | None = None,
            message: str | None = None) -> list[Op]:
    extra = {"final": True} if final else {}
    done = dict(extra, **({"message": message} if message else {}))
    return [Op(2 * i, 2 * i, i % 5, "invoke", f, key=1, extra=dict(extra)),
            Op(2 * i + 1, 2 * i + 1, i % 5, type_, f, key=1, value=i if type_ == "ok" else None,
               error=error, extra=done)]


def test_reads_that_never_succeeded_make_the_run_unknown_naming_the_error() -> None:
    ops = [o for i in range(30) for o in _client(i, "write", "ok")]
    ops += [o for i in range(30, 42) for o in _client(i, "read", "fail", error="InvalidRequest",
                                                       message="ANY is a write-only consistency level")]
    ops += [o for i in range(42, 45) for o in _client(i, "read", "ok", final=True)]  # the harness's, not the workload's
    r = campaign.check(ops, {"nemeses": []})
    assert r.valid == "unknown" and r.counts["client_ops_never_ok"] == 1
    assert r.details["client_ops_never_ok"] == ["read"]
    assert r.details["reason"] == ("no client read succeeded (12 tried, 0 ok; most often "
                                   "'InvalidRequest: ANY is a write-only consistency level', 12 times): "
                                   "the workload's reads were not tested")


def test_one_ok_or_too_few_tries_keep_the_run_valid() -> None:
    ops = [o for i in range(20) for o in _client(i, "write", "ok")]
    ops += [o for i in range(20, 40) for o in _client(i, "read", "info", error="ReadTimeout")] + _client(40, "read", "ok")
    ops += [o for i in range(41, 41 + campaign.MIN_TRIED - 1) for o in _client(i, "delete", "fail", error="Unavailable")]
    r = campaign.check(ops, {"nemeses": []})
    assert r.valid is True and r.counts["client_ops_never_ok"] == 0, r.details


def test_failing_final_reads_alone_are_not_the_workloads() -> None:
    ops = [o for i in range(20) for o in _client(i, "write", "ok")]
    ops += [o for i in range(20, 40) for o in _client(i, "read", "fail", final=True, error="Unavailable")]
    ops += [o for i in range(40, 45) for o in _client(i, "read", "ok")]
    assert campaign.check(ops, {"nemeses": []}).valid is True


def test_a_set_never_read_after_its_adds_is_unknown_not_valid() -> None:
    # Jepsen's set-full: with no stable element nothing about the set was observed.
    from checkers import sets

    adds = [o for i in range(3) for o in (Op(2 * i, 2 * i, i, "invoke", "add", key=1, value=i),
                                          Op(2 * i + 1, 2 * i + 1, i, "ok", "add", key=1, value=i))]
    failed_read = _client(3, "read", "fail", error="Unavailable")
    r = sets.check(adds + failed_read)
    assert r.valid == "unknown" and r.counts["never-read"] == 3 and "not observed" in r.details["reason"]
    seen = Op(8, 8, 4, "invoke", "read", key=1), Op(9, 9, 4, "ok", "read", key=1, value=[0, 1, 2])
    assert sets.check(adds + list(seen)).valid is True
