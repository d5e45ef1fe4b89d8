"""What a campaign test may accept: a run whose store checkers are all valid, and whose only
'unknown' is a requested nemesis the schedule never reached before the time limit.

On a loaded machine a slow step (a membership change, an SSH heal) can push a test's last
nemesis past its time limit; harness run then rightly says unknown (exit 2). A test about the
store's validity under the faults that did happen accepts that, but never for the nemeses it is
about (``needed``): those must have taken effect, and no injection may have failed."""

from __future__ import annotations

from typing import Any


def assert_valid_where_faults_ran(returncode: int, results: dict[str, Any], needed: set[str], out: str = "") -> None:
    """Every checker valid, except a campaign checker whose only reason is an unstarted nemesis."""
    campaign = results["checkers"]["campaign"]
    details = campaign["details"]
    missing = [n for n in needed if details["effective"].get(n, 0) < 1]
    assert not missing, f"{missing} never took effect: {details}\n{out}"
    if returncode == 0 and results["valid"] is True:
        return
    assert returncode == 2, out
    store = {name: c["valid"] for name, c in results["checkers"].items() if name != "campaign"}
    assert all(v is True for v in store.values()), (store, out)
    never = details["never_injected"]
    assert never and all(details["started"].get(n, 0) == 0 for n in never), (details, out)
    assert sum(details["failed"].values()) == 0, (details, out)
