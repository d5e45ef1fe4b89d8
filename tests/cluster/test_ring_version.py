"""The ring admin op's version: an asker that holds the current ring gets the version alone; a
stale version, or one from before a restart, gets the whole ring; with ``wait`` the node holds
the request until its ring changes (harness/movement_probe.py watches every node so while a
membership change runs)."""

from __future__ import annotations

from pathlib import Path

import trio

from node.protocol import InvalidRequest
from tests.cluster.conftest import Cluster, call, wait_until


def test_ring_answers_only_a_version_the_asker_does_not_hold(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 1)
    cluster.start()
    try:
        node = cluster[0]
        full = trio.run(call, node, "ring")
        assert full["tokens"] and "version" in full and not full.get("unchanged")
        again = trio.run(lambda: call(node, "ring", unless_version=full["version"]))
        assert again["unchanged"] is True and again["version"] == full["version"] and "tokens" not in again
        stale = trio.run(lambda: call(node, "ring", unless_version=[0, 0]))
        assert stale["tokens"] == full["tokens"] and stale["version"] == full["version"]

        node.kill()
        node.start()
        node.wait_ready()
        after = trio.run(lambda: call(node, "ring", unless_version=full["version"]))
        # The same tokens (they are saved), but a new incarnation's version: the whole ring.
        assert [t[:2] for t in after["tokens"]] == [t[:2] for t in full["tokens"]]
        assert after["version"] != full["version"] and not after.get("unchanged")
    finally:
        cluster.stop()


def test_ring_waits_for_a_new_version_and_answers_at_the_change(tmp_path: Path) -> None:
    """``wait``: the node holds a request whose version it still has, answers ``unchanged`` when
    the wait ends, and answers with the new ring as soon as it changes (here a decommission of
    the other node, long before the wait would end); a bad ``wait`` is refused by name."""
    cluster = Cluster(tmp_path, 2)
    cluster.start()
    try:
        stay, leaver = cluster[0], cluster[1]
        wait_until(lambda: {t[1] for t in trio.run(call, stay, "ring")["tokens"]} == {"n1", "n2"}, 30,
                   what="n1's ring names n2")
        full = trio.run(call, stay, "ring")

        async def held() -> tuple[dict, float]:
            started = trio.current_time()
            resp = await call(stay, "ring", unless_version=full["version"], wait=0.4)
            return resp, trio.current_time() - started

        resp, took = trio.run(held)
        assert resp["unchanged"] is True and resp["version"] == full["version"] and "tokens" not in resp, resp
        assert took >= 0.35, took

        async def refusal(bad: object) -> BaseException:
            try:
                await call(stay, "ring", unless_version=full["version"], wait=bad)
            except BaseException as exc:  # noqa: BLE001 - the refusal is what is checked
                while isinstance(exc, BaseExceptionGroup):
                    exc = exc.exceptions[0]
                return exc
            raise AssertionError(f"wait={bad!r} was accepted")

        for bad in (-1, "soon", True, 31):
            exc = trio.run(refusal, bad)
            assert isinstance(exc, InvalidRequest) and "field 'wait'" in str(exc), exc

        async def watch_a_decommission() -> list[dict]:
            answers: list[dict] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: call(leaver, "decommission", timeout=60))
                version = full["version"]
                # The wait is far longer than a decommission: every answer comes at a change
                # (n2 LEAVING, then gone), none at the wait's end.
                while len(answers) < 10:
                    resp = await call(stay, "ring", timeout=60, unless_version=version, wait=29)
                    answers.append(resp)
                    version = resp["version"]
                    if resp.get("unchanged") or {t[1] for t in resp["tokens"]} == {"n1"}:
                        break
            return answers

        answers = trio.run(watch_a_decommission)
        assert all(not a.get("unchanged") for a in answers), answers
        assert {t[1] for t in answers[-1]["tokens"]} == {"n1"}, answers
    finally:
        cluster.stop()
