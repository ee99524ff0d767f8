"""The annotation loop on the real base model: pairs from typed prompts and chat turns, answers
generated once by the pair job and shown only when ready, blind votes in the order shown, undo,
progress, unknown models refused before anything is generated."""
from __future__ import annotations

import json

import pytest

from storage import read_jsonl
from workbench.errors import WorkbenchError
from workbench.feedback.annotation import cast_vote, create_pairs, pair_store, pairs_from_chat_turns, undo_last
from workbench.feedback.distribution import claim_next_pair as next_pair
from workbench.feedback.stats import progress
from workbench.feedback.pairs import Side, prompts_from_jsonl


def generate(settings, pair_ids):
    from jobs import control
    from jobs.runner import execute

    run = control.create(settings, "pairs.generate", {"pair_ids": pair_ids})
    return execute(settings, run.id)


@pytest.fixture
def live(settings, pulled_base, monkeypatch):
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", str(pulled_base[1]))  # what the job reads, as a worker would
    return settings.__class__(**{**settings.__dict__, "base_model": str(pulled_base[1])})


@pytest.mark.slow(22)
def test_pairs_are_generated_once_voted_blind_and_undone(live):
    ws = live.workspace
    a, b = Side("base", 0.0, 12), Side("base", 1.2, 12)
    with pytest.raises(WorkbenchError, match="unknown model 'ghost'"):
        create_pairs(live, ["Name a colour."], "typed", a, Side("ghost", 0.0, 12))
    assert not (ws.data / "pairs.jsonl").exists()
    with pytest.raises(WorkbenchError, match="same greedy answer"):
        create_pairs(live, ["Name a colour."], "typed", a, Side("base", 0.0, 12))

    created = create_pairs(live, ["Name a colour.", "Name a fruit."], "typed", a, b)
    assert (created["added"], created["already_there"], len(created["pair_ids"])) == (2, 0, 2)
    again = create_pairs(live, ["Name a colour."], "typed", a, b)
    assert (again["added"], again["already_there"], again["pair_ids"]) == (0, 1, [created["pair_ids"][0]])
    assert next_pair(ws, "alice") is None  # nothing is shown before its answers exist
    assert progress(ws, "alice")["generating"] == 2

    run = generate(live, created["pair_ids"])
    assert run["status"] == "succeeded" and run["result"]["generated"] == 4, run
    pair = next_pair(ws, "alice")
    assert pair.prompt == "Name a colour." and pair.a.answer and pair.b.answer
    kept = {p.pair_id: (p.a.answer, p.b.answer) for p in pair_store(ws).all().values()}
    assert generate(live, created["pair_ids"])["result"]["generated"] == 0  # generated once
    assert {p.pair_id: (p.a.answer, p.b.answer) for p in pair_store(ws).all().values()} == kept

    pair = pair_store(ws).all()[pair.pair_id]
    left, right = pair.shown()
    vote = cast_vote(ws, pair, "alice", "a", comment="clearer")
    assert (vote["answer_a"], vote["model_a"]) == (left.answer, left.label())
    counts = progress(ws, "alice")
    assert {k: counts[k] for k in ("mine", "left", "total", "generating", "per_annotator")} == {
        "mine": 1, "left": 1, "total": 2, "generating": 0, "per_annotator": {"alice": 1}}
    assert next_pair(ws, "alice").prompt == "Name a fruit."  # now on alice's screen, leased to her
    assert next_pair(ws, "bob") is None  # the colour pair has its one vote, the fruit pair is alice's
    assert next_pair(ws, "alice", skipped={next_pair(ws, "alice").pair_id}) is None
    assert undo_last(ws, "alice") == pair.pair_id
    assert read_jsonl(ws.feedback_file) == [] and progress(ws, "alice")["mine"] == 0
    assert next_pair(ws, "bob").prompt == "Name a colour."  # the undone vote put it back in the queue


def test_chat_turns_become_pairs_and_prompt_files_are_checked(live, tmp_path):
    ws = live.workspace
    ws.data.mkdir(parents=True, exist_ok=True)
    turn = {"id": "t1", "prompt": "Q?\n\nContext:\nC.", "answer": "From chat.", "model": "base",
            "chunk_ids": ["d:0"], "request": {"temperature": 0.0, "max_new_tokens": 12}}
    ws.chat_turns_file.write_text(json.dumps(turn) + "\n")
    assert pairs_from_chat_turns(live, Side("base", 0.9, 12))["added"] == 1
    pair = next(iter(pair_store(ws).all().values()))
    assert pair.a.answer == "From chat." and pair.chunk_ids == ["d:0"] and pair.source == "chat"

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "one"}\n{"instruction": "Translate", "input": "chat"}\n'
                       '{"messages": [{"role": "user", "content": "three"}]}\n{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match="line 4: no prompt"):
        prompts_from_jsonl(prompts)
    prompts.write_text('{"prompt": "one"}\n{"instruction": "Translate", "input": "chat"}\n'
                       '{"messages": [{"role": "user", "content": "three"}]}\n')
    assert prompts_from_jsonl(prompts) == ["one", "Translate\n\nchat", "three"]
