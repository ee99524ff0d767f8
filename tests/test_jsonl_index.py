"""The compact index beside the votes and the pairs: kept by the writers, checked by the readers
against the file, so a line appended without it, a file replaced or edited by hand, a broken line
and writers in several processes at once all read as the file says."""
from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from storage import JsonlError
from storage.jsonl import append_jsonl, read_jsonl
from storage.jsonl_index import IndexedJsonl
from workbench.feedback.pairs import Side, make_pair, pair_store
from workbench.feedback.tally import vote_rows
from workbench.feedback.votes import Vote, record_vote, record_votes, remove_vote


def fields(record: dict) -> list:
    return [record["id"], record.get("who", "")]


def marks(index: IndexedJsonl) -> list[dict]:
    return [json.loads(line) for line in index.index_path.read_text().splitlines() if line.startswith("{")]


def test_the_index_follows_every_write_and_the_readers_check_it(tmp_path):
    path = tmp_path / "votes.jsonl"
    index = IndexedJsonl(path, fields)
    assert index.entries() == []
    index.append([{"id": "1", "who": "Élodie", "text": "long " * 100}, {"id": "2", "who": "bob"}])
    index.append([{"id": "3", "who": "chloé"}])
    assert index.entries() == [["1", "Élodie"], ["2", "bob"], ["3", "chloé"]]
    assert marks(index)[-1]["end"] == path.stat().st_size  # the index covers the whole file

    append_jsonl(path, [{"id": "4", "who": "a writer without the index"}])
    assert index.entries()[-1] == ["4", "a writer without the index"]  # the tail is read from the file
    index.append([{"id": "5"}])  # the next writer indexes the tail first
    assert [e[0] for e in index.entries()] == ["1", "2", "3", "4", "5"]
    assert marks(index)[-1]["end"] == path.stat().st_size

    # edited by hand to the same size, in place: the index no longer describes it
    text = path.read_bytes().replace(b'"who": "bob"', b'"who": "BOB"')
    with open(path, "r+b") as handle:
        handle.write(text)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert index.entries()[1] == ["2", "BOB"]
    # replaced by another file (another inode)
    path.write_text(json.dumps({"id": "9", "who": "new"}) + "\n")
    assert index.entries() == [["9", "new"]]
    # a last line without its newline is read whole, under the lock, not left out
    with open(path, "ab") as handle:
        handle.write(b'{"id": "10", "who": "no newline"}')
    assert index.entries()[-1] == ["10", "no newline"]
    index.append([{"id": "11"}])
    assert [e[0] for e in index.entries()] == ["9", "10", "11"]
    assert [r["id"] for r in read_jsonl(path)] == ["9", "10", "11"]


def test_a_broken_line_is_reported_by_line_even_after_a_writer_came_by(settings):
    ws = settings.workspace.ensure()
    record_vote(ws.feedback_file, Vote("p1", "Quelle est la rétention ?", "Quatre semaines.", "Deux.", "a", "alice"))
    with open(ws.feedback_file, "ab") as handle:
        handle.write(b'{"id": "broken", \n')
    with pytest.raises(JsonlError, match="line 2"):
        vote_rows(ws.feedback_file)
    record_vote(ws.feedback_file, Vote("p2", "Et les journaux ?", "Chaque semaine.", "Jamais.", "b", "bob"))
    with pytest.raises(JsonlError, match="line 2"):
        vote_rows(ws.feedback_file)  # the vote is kept, and the writer indexed nothing past the line
    append_jsonl(ws.feedback_file, [Vote("p3", "Et encore ?", "Oui.", "Non.", "a", "chloé").to_dict()])
    with pytest.raises(JsonlError, match="line 2"):
        vote_rows(ws.feedback_file)
    lines = ws.feedback_file.read_bytes().splitlines(keepends=True)
    ws.feedback_file.write_bytes(b"".join(line for line in lines if b"broken" not in line))
    assert [r.annotator for r in vote_rows(ws.feedback_file)] == ["alice", "bob", "chloé"]


def test_replaced_and_removed_votes_and_pairs_read_the_same_through_the_index(settings):
    ws = settings.workspace.ensure()
    vote = Vote("p1", "Combien de semaines ?", "Quatre.", "Deux.", "a", "alice")
    record_votes(ws.feedback_file, [vote, Vote("p1", vote.prompt, "Quatre.", "Deux.", "b", "bob")])
    record_vote(ws.feedback_file, Vote("p1", vote.prompt, "Quatre.", "Deux.", "tie", "alice"))  # a re-vote replaces
    assert {(r.annotator, r.choice) for r in vote_rows(ws.feedback_file)} == {("alice", "tie"), ("bob", "b")}
    assert remove_vote(ws.feedback_file, "p1", "bob") and not remove_vote(ws.feedback_file, "p1", "bob")
    assert [(r.annotator, r.choice) for r in vote_rows(ws.feedback_file)] == [("alice", "tie")]
    assert len(read_jsonl(ws.feedback_file)) == 1

    store = pair_store(ws)
    pair = make_pair("Où sont les journaux ?", "typed", Side("base", 0.0), Side("base", 0.8))
    store.add([pair])
    assert not store.summaries()[pair.pair_id].ready
    store.save_answers([(pair.pair_id, "a", "Dans /var/log.", ""), (pair.pair_id, "b", "Ailleurs.", "")])
    summary = store.summaries()[pair.pair_id]
    assert summary.ready and summary.set_name == "default" and summary.gold == ""
    assert summary.shown_letter("a") == store.all()[pair.pair_id].shown_letter("a")
    assert store.add([pair]) == {"added": 0, "already_there": 1}


def _append_many(path: str, who: str, count: int) -> None:
    index = IndexedJsonl(path, fields)
    for n in range(count):
        index.append([{"id": f"{who}-{n}", "who": who}])


def test_writers_in_several_processes_keep_the_index_whole(tmp_path):
    path = tmp_path / "votes.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), who, 40)) for who in ("a", "b", "c")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    index = IndexedJsonl(path, fields)
    assert marks(index)[-1]["end"] == path.stat().st_size
    assert index.entries() == [fields(r) for r in read_jsonl(path)]
    assert len(index.entries()) == 120
