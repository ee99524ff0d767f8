"""SFT data import: the three formats, validation by line, split, stats, rows from votes; the
imported file trains a step in TRL's SFTTrainer unchanged."""
from __future__ import annotations

import json

from workbench.feedback.votes import Vote, record_vote

ROWS = [
    {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello!"}]},
    {"prompt": "2+2?", "completion": "4"},
    {"instruction": "Translate to French", "input": "cat", "output": "chat"},
] + [{"prompt": f"Question {i}?", "completion": f"Answer {i}."} for i in range(17)]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_import_formats_split_and_stats(wb, settings, tmp_path):
    source = write(tmp_path / "rows.jsonl", ROWS)
    code, out, _ = wb("data", "import", str(source), "--split", "0.25", "--seed", "1", "--json")
    result = json.loads(out)
    assert code == 0 and result["train_rows"] + result["test_rows"] == 20 and 0 < result["test_rows"] < 10
    train = [json.loads(line) for line in settings.workspace.train_file.read_text().splitlines()]
    test = [json.loads(line) for line in settings.workspace.test_file.read_text().splitlines()]
    assert len(train) == result["train_rows"] and not {json.dumps(r) for r in train} & {json.dumps(r) for r in test}
    everything = train + test
    assert {"prompt": "Translate to French\n\ncat", "completion": "chat"} in everything
    assert ROWS[0] in everything

    code, out, _ = wb("data", "stats", "train", "--json")
    stats = json.loads(out)
    assert stats["rows"] == len(train) and stats["formats"]


def test_bad_line_is_reported_and_nothing_is_written(wb, settings, tmp_path):
    good = write(tmp_path / "good.jsonl", ROWS[:2])
    assert wb("data", "import", str(good))[0] == 0
    before = settings.workspace.train_file.read_bytes()
    for rows, line, reason in [
        (ROWS[:2] + [{"prompt": "x", "completion": ""}], 3, "completion is empty"),
        ([{"messages": [{"role": "user", "content": "only a question"}]}], 1, "last message must be"),
        ([{"text": "free text"}], 1, "unknown format"),
    ]:
        code, _, err = wb("data", "import", str(write(tmp_path / "bad.jsonl", rows)))
        assert code == 2 and f"line {line}" in err and reason in err
    (tmp_path / "broken.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{not json\n')
    code, _, err = wb("data", "import", str(tmp_path / "broken.jsonl"))
    assert code == 2 and "line 2: invalid JSON" in err
    assert settings.workspace.train_file.read_bytes() == before


def test_chosen_answers_become_rows_and_train_in_trl_sft(wb, settings, tmp_path, pulled_base):
    ws = settings.workspace
    for pair, choice, edited in [("p1", "a", ""), ("p2", "b", ""), ("p3", "tie", ""), ("p4", "both_bad", "Better.")]:
        record_vote(ws.feedback_file, Vote(pair_id=pair, prompt=f"Prompt {pair}", answer_a=f"A{pair}",
                                           answer_b=f"B{pair}", choice=choice, annotator="ann",
                                           edited_answer=edited))
    code, out, _ = wb("data", "from-feedback", "--json")
    assert code == 0 and json.loads(out)["train_rows"] == 3
    rows = [json.loads(line) for line in ws.train_file.read_text().splitlines()]
    assert rows == [{"prompt": "Prompt p1", "completion": "Ap1"}, {"prompt": "Prompt p2", "completion": "Bp2"},
                    {"prompt": "Prompt p4", "completion": "Better."}]

    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(pulled_base[1])
    tiny = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForCausalLM.from_config(tiny)
    before = [p.detach().clone() for p in model.parameters()]
    dataset = load_dataset("json", data_files=str(ws.train_file), split="train")
    SFTTrainer(model=model, train_dataset=dataset, processing_class=tokenizer,
               args=SFTConfig(output_dir=str(tmp_path / "sft"), per_device_train_batch_size=2, max_steps=1,
                              report_to="none", use_cpu=True, bf16=False, gradient_checkpointing=False,
                              save_strategy="no", learning_rate=1e-2)).train()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
