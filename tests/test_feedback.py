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
    same = vote("same", "a")
    same.answer_b = same.answer_a  # both sides gave the same text: nothing to prefer
    record_vote(path, same)
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
    assert report["dropped"] == {"tie": 1, "both_bad": 1, "no_majority": 1, "duplicate": 1, "same_answer": 1}
    assert {"pair_id": "split", "a": 2, "b": 1, "resolved": "a"} in report["conflicts"]
    assert {"pair_id": "even", "a": 1, "b": 1, "resolved": None} in report["conflicts"]
    assert report["per_annotator"] == {"ann": 6, "x": 2, "y": 2, "z": 1}
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


def test_cli_import_pairs_then_merge_prints_a_summary(wb, settings, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "What is 2+2?\n\nContext:\nArithmetic.", "chosen": "4", "rejected": "5",
         "annotator_comment": "correct", "timestamp": "2025-10-29T18:45:02"},
        {"prompt": "Capital of Italy?", "chosen": "Rome", "rejected": "Milan"},
    ]))
    code, out, _ = wb("feedback", "import", str(pairs), "--annotator", "bob", "--json")
    assert code == 0 and json.loads(out) == {"written": 2, "replaced": 0}
    assert wb("feedback", "import", str(pairs), "--annotator", "bob", "--json")[1].strip() == \
        json.dumps({"written": 2, "replaced": 2})  # importing again replaces, never duplicates

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "ok", "chosen": "a", "rejected": "b"}) + "\n\n"
                   + json.dumps({"prompt": "", "chosen": "a", "rejected": "b"}) + "\n")
    code, _, err = wb("feedback", "import", str(bad))
    assert code == 2 and "line 3" in err and "prompt is empty" in err
    assert len(read_votes(settings.workspace.feedback_file)) == 2

    code, out, _ = wb("merge-feedback")
    assert code == 0 and "2 pairs written to" in out and "per annotator: bob 2" in out
    rows = [json.loads(line) for line in settings.workspace.rlhf_file.read_text().splitlines()]
    assert rows[0]["prompt"] == "What is 2+2?\n\nContext:\nArithmetic." and rows[0]["chosen"] == "4"
    assert rows[0]["annotator_comment"] == "correct" and rows[0]["timestamp"] == "2025-10-29T18:45:02"


def test_merged_file_trains_in_trl_reward_and_dpo_trainers_unchanged(tmp_path, pulled_base):
    import torch
    from datasets import load_dataset
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                              LlamaConfig)
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    path = tmp_path / "feedback.jsonl"
    for i in range(4):
        record_vote(path, vote(f"p{i}", "a" if i % 2 else "b", comment=f"note {i}"))
    out = tmp_path / "dataset_rlhf.jsonl"
    merge_feedback(path, out)
    dataset = load_dataset("json", data_files=str(out), split="train")
    assert dataset.num_rows == 4 and {"prompt", "chosen", "rejected"} <= set(dataset.column_names)

    tokenizer = AutoTokenizer.from_pretrained(pulled_base[1])
    tiny = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                       pad_token_id=tokenizer.pad_token_id)
    common = {"per_device_train_batch_size": 2, "max_steps": 1, "report_to": "none", "use_cpu": True,
              "bf16": False, "gradient_checkpointing": False, "save_strategy": "no", "learning_rate": 1e-2}
    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_config(tiny)
    before = [p.detach().clone() for p in policy.parameters()]
    DPOTrainer(model=policy, ref_model=AutoModelForCausalLM.from_config(tiny),
               args=DPOConfig(output_dir=str(tmp_path / "dpo"), max_length=128, **common),
               train_dataset=dataset, processing_class=tokenizer).train()
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))

    reward = AutoModelForSequenceClassification.from_config(tiny.__class__(**{**tiny.to_dict(), "num_labels": 1}))
    before = [p.detach().clone() for p in reward.parameters()]
    RewardTrainer(model=reward, args=RewardConfig(output_dir=str(tmp_path / "rm"), max_length=128, **common),
                  train_dataset=dataset, processing_class=tokenizer).train()
    assert any(not torch.equal(a, b) for a, b in zip(before, reward.parameters()))
