"""A live node under a pipelined flood of admin scrubs answers every one, and its error answers
clip what they echo of a client's input (names up to 64 KB) instead of handing it all back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from node.protocol import ERROR_MESSAGE_CHARS, clipped

from tests.cluster.conftest import SECRET, Cluster, bench_module, call, one_node

fz = bench_module("fuzz_protocol")

HUGE = 65536


@pytest.fixture(scope="module")
def node1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with one_node(tmp_path_factory.mktemp("flood")) as c:
        yield c


def test_a_pipelined_flood_of_scrubs_is_answered_in_full(node1: Cluster) -> None:
    # Each scrub ran a verify and a repair of its own, one after another (one repair at a time):
    # 4000 pipelined on one connection left most unanswered after 20 s. Concurrent scrubs now
    # share a run.
    n = 4000
    flood = b"".join(fz.frame({"id": i, "op": "scrub", "secret": SECRET}) for i in range(n))
    answers = fz.decode_answers(fz.send_each(node1[0].client_port, [flood], read_s=20)[0])
    assert len(answers) == n
    assert sorted(a["id"] for a in answers) == list(range(n))
    assert all(a["ok"] or a["error"]["name"] == "Overloaded" for a in answers), [a for a in answers if not a["ok"]][:3]
    runs = (node1[0].dir / "stderr.log").read_text(errors="replace").count("repair complete")
    assert 1 <= runs < 50, runs
    assert trio.run(lambda: call(node1[0], "scrub"))["released"] == []  # and a lone scrub still runs


def test_error_answers_clip_what_they_echo_of_the_request(node1: Cluster) -> None:
    big = "x" * HUGE
    requests = [
        {"op": "put", "keyspace": big, "table": "t", "key": "k", "columns": {"a": 1}, "consistency": "ONE"},
        {"op": "get", "keyspace": "ks", "table": big, "key": "k", "consistency": "ONE"},
        {"op": "put", "keyspace": "ks", "table": "t", "key": "k", "columns": {big: {"not": "a value"}},
         "consistency": "ONE"},
        {"op": "get", "keyspace": "ks", "table": "t", "key": "k", "consistency": big},
        {"op": big},
        {"op": "create_table", "keyspace": "ks", "name": "t2", "options": {big: 1}, "secret": SECRET},
    ]
    frames = b"".join(fz.frame({"id": i, **r}) for i, r in enumerate(requests))
    answers = fz.decode_answers(fz.send_each(node1[0].client_port, [frames], read_s=10)[0])
    assert len(answers) == len(requests)
    for a in answers:
        err = a["error"]
        assert err["name"] == "InvalidRequest", a
        # Clipped, saying so, and the end (what was wrong) kept.
        assert len(err["message"]) <= ERROR_MESSAGE_CHARS + 40 and "more characters" in err["message"], err
    by_id = {a["id"]: a["error"]["message"] for a in answers}
    assert by_id[0].endswith("must be 1-48 ASCII letters, digits or underscores"), by_id[0][-200:]
    assert by_id[0].startswith("keyspace 'xxx")


def test_clipped_keeps_both_ends_and_leaves_short_text_alone() -> None:
    assert clipped("short", 300) == "short"
    text = "head " + "y" * 5000 + " tail"
    out = clipped(text, 300)
    assert out.startswith("head y") and out.endswith("y tail") and f"({len(text) - 300} more characters)" in out
    assert len(out) < 350
