"""The ring admin op's version: an asker that holds the current ring gets the version alone; a
stale version, or one from before a restart, gets the whole ring (harness/movement_probe.py
polls with it every few ms while a membership change runs)."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.cluster.conftest import Cluster, call


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
