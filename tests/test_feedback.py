"""Votes in feedback.jsonl (many writers at once, re-submits replace, undo) and their merge into
dataset_rlhf.jsonl (the seed's fields, ties and both-bad left out, majority, dedupe, split)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from storage import JsonlError
from tests.conftest import ROOT
from workbench.feedback.merge import merge_feedback
from workbench.feedback.votes import Vote, VoteError, read_votes, record_vote, remove_vote

WRITER = """
import sys
from workbench.feedback.votes import Vote, record_vote
path, who = sys.argv[1], sys.argv[2]
for i in range(50):
    record_vote(path, Vote(pair_id=f"{who}-{i}", prompt="Q " * 200 + f"{i}\\n\\nContext:\\nctx",
                           answer_a="A " * 300, answer_b="B " * 300, choice="a", annotator=who))
"""


def test_twenty_writers_at_once_give_exactly_a_thousand_valid_lines(tmp_path):
    path = tmp_path / "feedback.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"ann{n}"], cwd=ROOT)
             for n in range(20)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 20
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 1001
    votes = [json.loads(line) for line in lines[:-1]]
    assert len({v["id"] for v in votes}) == 1000
    assert all(v["answer_a"] == "A " * 300 for v in votes)


def vote(pair: str, choice: str, annotator: str = "ann", **extra) -> Vote:
    return Vote(pair_id=pair, prompt=f"Question {pair}?\n\nContext:\nSome context.",
                answer_a=f"answer A of {pair}", answer_b=f"answer B of {pair}", choice=choice,
                annotator=annotator, model_a="base", model_b="tuned", **extra)


def test_resubmit_replaces_and_undo_removes(tmp_path):
    path = tmp_path / "feedback.jsonl"
    record_vote(path, vote("p1", "a"))
    record_vote(path, vote("p2", "b"))
    assert record_vote(path, vote("p1", "b", comment="changed my mind")) == {"written": 1, "replaced": 1}
    votes = read_votes(path)
    assert [(v["pair_id"], v["choice"]) for v in votes] == [("p2", "b"), ("p1", "b")]
    assert remove_vote(path, "p1", "ann") and [v["pair_id"] for v in read_votes(path)] == ["p2"]
    assert not remove_vote(path, "p1", "ann")


@pytest.mark.parametrize(("change", "message"), [
    ({"prompt": "  "}, "prompt is empty"),
    ({"answer_b": ""}, "an answer is empty"),
    ({"choice": "maybe"}, "choice must be one of"),
    ({"annotator": ""}, "annotator is empty"),
])
def test_bad_votes_are_refused_and_nothing_is_written(tmp_path, change, message):
    path = tmp_path / "feedback.jsonl"
    record_vote(path, vote("ok", "a"))
    fields = {**vote("bad", "a").to_dict(), **change}
    fields.pop("id")
    with pytest.raises(VoteError, match=message):
        record_vote(path, Vote(**fields))
    assert [v["pair_id"] for v in read_votes(path)] == ["ok"]


def test_merge_rules_and_summary(tmp_path):
    path = tmp_path / "feedback.jsonl"
    for v in [vote("clear", "a", comment="precise"),
              vote("tie", "tie"), vote("bad", "both_bad"),
              vote("split", "a", "x"), vote("split", "a", "y"), vote("split", "b", "z"),
              vote("even", "a", "x"), vote("even", "b", "y"),
              vote("rewrite", "both_bad", edited_answer="A much better answer.")]:
        record_vote(path, v)
    dup = vote("clear-again", "a")
    dup.prompt, dup.answer_a, dup.answer_b = vote("clear", "a").prompt, "answer A of clear", "answer B of clear"
    record_vote(path, dup)
    out = tmp_path / "dataset_rlhf.jsonl"
    report = merge_feedback(path, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    seed_fields = {"prompt", "chosen", "rejected", "annotator_comment", "timestamp"}
    assert all(seed_fields <= set(r) for r in rows)
    by_chosen = {r["chosen"]: r for r in rows}
    assert by_chosen["answer A of clear"]["rejected"] == "answer B of clear"
    assert by_chosen["answer A of clear"]["annotator_comment"] == "precise"
    assert by_chosen["answer A of split"]["annotators"] == ["x", "y"]
    assert sorted(r["rejected"] for r in rows if r["chosen"] == "A much better answer.") == [
        "answer A of rewrite", "answer B of rewrite"]
    assert len(rows) == 4 and report["kept"] == 4
    assert report["dropped"] == {"tie": 1, "both_bad": 1, "no_majority": 1, "duplicate": 1}
    assert {"pair_id": "split", "a": 2, "b": 1, "resolved": "a"} in report["conflicts"]
    assert {"pair_id": "even", "a": 1, "b": 1, "resolved": None} in report["conflicts"]
    assert report["per_annotator"] == {"ann": 5, "x": 2, "y": 2, "z": 1}
    assert report["agreement"] == pytest.approx(1 / 4)

    split = merge_feedback(path, out, test_fraction=0.5, seed=3)
    again = merge_feedback(path, out, test_fraction=0.5, seed=3)
    assert split["kept"] + split["test_pairs"] == 4 and split == again
    train = {json.loads(line)["prompt"] for line in out.read_text().splitlines()}
    test = {json.loads(line)["prompt"] for line in (tmp_path / "dataset_rlhf_test.jsonl").read_text().splitlines()}
    assert not train & test


def test_malformed_line_is_reported_and_nothing_is_written(tmp_path):
    path = tmp_path / "feedback.jsonl"
    record_vote(path, vote("p1", "a"))
    with open(path, "a") as handle:
        handle.write('{"broken": \n')
    record_vote(path, vote("p2", "a"))
    out = tmp_path / "dataset_rlhf.jsonl"
    out.write_text("previous content\n")
    with pytest.raises(JsonlError, match="line 2"):
        merge_feedback(path, out)
    assert out.read_text() == "previous content\n"
