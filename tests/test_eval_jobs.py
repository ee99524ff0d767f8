"""Evaluation as a job on a tiny model: every set at once (an SFT adapter, a reward model that
judges the win-rates, RAG questions on a real index, human votes, a model that cannot load), the
report and the scoreboard; a cancelled evaluation that resumes without redoing finished units;
bad input refused before anything is queued."""
from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import pytest

from tests.conftest import RAG_QUESTIONS, cli, ingest, run_status, wait_for
from tests.helpers import sft_rows, three_docs, write_jsonl


def votes_for(settings, winner: str, loser: str, n: int = 6) -> None:
    from workbench.feedback.votes import Vote, record_votes

    votes = []
    for i in range(n):
        a, b = (winner, loser) if i % 2 else (loser, winner)
        votes.append(Vote(pair_id=f"p{i}", prompt=f"question {i}", answer_a="one", answer_b="two",
                          choice="a" if a == winner else "b", annotator="ann",
                          model_a=f"{a} (temperature 0)", model_b=f"{b} (temperature 0.7)"))  # as Annotate labels them
    record_votes(settings.workspace.feedback_file, votes)


def full_model_copy(settings, source, name: str) -> None:
    """A full model folder in the workspace (as a merge writes one), from the tiny base."""
    target = settings.workspace.model_dir(name)
    shutil.copytree(source, target)
    (target / "manifest.json").write_text(json.dumps({"name": name, "kind": "model", "method": "merge",
                                                      "parent": "base"}))


@pytest.mark.slow(24)
def test_evaluation_of_every_set(train_env, wb, settings, tmp_path):
    from workbench.chat.system_prompt import save_system_prompt

    ws = settings.workspace
    save_system_prompt(ws.ensure(), "Réponds en une phrase, fidèle au contexte.", "tom")
    write_jsonl(ws.test_file, sft_rows(16)[12:])
    for method in ("sft", "reward"):
        code, _, err = wb("train", method, "--max-steps", "1", "--batch-size", "2", "--json")
        assert code == 0, err
    code, _, err = ingest(wb, str(three_docs(tmp_path / "docs")))
    assert code == 0, err
    write_jsonl(ws.data / "rag_questions.jsonl", RAG_QUESTIONS)
    votes_for(settings, "llama-lora-adapted", "base")
    broken = ws.model_dir("broken")  # a manifest, but no loadable weights: its row fails alone
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text(json.dumps({"name": "broken", "kind": "model", "parent": "base"}))
    (broken / "config.json").write_text("{}")

    code, out, err = wb("eval", "--models", "base,llama-lora-adapted,reward_model,broken", "--max-prompts", "4",
                        "--max-new-tokens", "8", "--json")
    assert code == 0, err
    run = json.loads(out)
    assert run["status"] == "succeeded", run
    folder = ws.runs / run["id"]
    report = json.loads((folder / "report.json").read_text())
    assert report["partial"] is False and report["sets"] == ["test", "preferences", "rag", "votes"]
    assert report["judge"] == "reward_model"
    rows = report["models"]
    for name in ("base", "llama-lora-adapted"):
        metrics = rows[name]["metrics"]
        assert metrics["test_loss"] > 0 and metrics["test_perplexity"] > 1
        assert 0 <= metrics["test_rouge_l"] <= 1
        # the tiny model's answers may hold no content word at all: then grounding has no value
        assert "rag_grounding" in metrics and (metrics["rag_grounding"] is None or 0 <= metrics["rag_grounding"] <= 1)
    adapter = rows["llama-lora-adapted"]
    assert adapter["lineage"] == ["llama-lora-adapted", "base"] and adapter["method"] == "sft"
    low, high = adapter["intervals"]["win_rate_vs_base"]
    assert low <= adapter["metrics"]["win_rate_vs_base"] <= high
    assert adapter["metrics"]["win_rate_vs_parent"] == adapter["metrics"]["win_rate_vs_base"]  # its parent is base
    assert adapter["metrics"]["human_rating"] > rows["base"]["metrics"]["human_rating"]  # it won every vote
    assert adapter["metrics"]["human_votes"] == 6
    assert 0 <= rows["reward_model"]["metrics"]["preference_accuracy"] <= 1
    assert rows["reward_model"]["role"] == "reward"
    assert rows["broken"]["error"] and not rows["broken"]["metrics"]
    assert report["retrieval"]["dense"]["hit@1"] == 1.0 and "mrr" in report["retrieval"]["hybrid"]
    sets_shown = {s["set"] for s in report["samples"]}
    assert sets_shown == {"test", "preferences", "rag"}
    assert all(set(s["answers"]) >= {"base", "llama-lora-adapted"} for s in report["samples"])
    html = (folder / "report.html").read_text()
    assert "plotly" in html.lower() and "win-rate vs base" in html and "llama-lora-adapted" in html
    # every model answered under the workspace's system prompt, and the report says which version
    assert report["environment"]["system_prompt"]["version"] == 1
    assert "system prompt, version 1" in html and "fidèle au contexte" in html

    # every score rests on a stated number of items, with an interval where it is a rate or a mean
    assert adapter["n"]["win_rate_vs_base"] == 4 and adapter["n"]["test_loss"] == 4 and adapter["n"]["human_votes"] == 6
    low, high = adapter["intervals"]["test_loss"]
    assert low <= adapter["metrics"]["test_loss"] <= high
    assert rows["reward_model"]["n"]["preference_accuracy"] > 0 and "preference_margin" in rows["reward_model"]["intervals"]
    assert "llama-lora-adapted" in rows["base"]["reference_of"]

    code, out, _ = wb("scoreboard", "--json")
    board = json.loads(out)
    names = [r["model"] for r in board["models"]]
    assert names[0] == "base" and {"llama-lora-adapted", "reward_model", "broken"} <= set(names)
    row = next(r for r in board["models"] if r["model"] == "llama-lora-adapted")
    assert row["dataset"] == "train.jsonl" and len(row["dataset_sha256"]) == 64
    win = row["metrics"]["win_rate_vs_base"]
    assert win["run"] == run["id"] and win["n"] == 4 and win["few"] is True
    assert win["interval"][0] <= win["value"] <= win["interval"][1]
    assert row["metrics"]["human_votes"]["n"] == 6 and row["metrics"]["human_votes"]["interval"] is None
    base_row = next(r for r in board["models"] if r["model"] == "base")
    assert base_row["evaluated"]["run"] == run["id"] and "llama-lora-adapted" in base_row["evaluated"]["reference_of"]
    assert board["best"]["human_rating"] == "llama-lora-adapted"
    from workbench.evaluate import scoreboard as sb

    headers, cells = sb.table(sb.build(settings))  # what the Evaluate tab shows: the best of a column starred
    starred = [headers[i] for row in cells for i, cell in enumerate(row) if str(cell).startswith("★ ")]
    assert "human rating (Bradley–Terry)" in starred
    shown = dict(zip(headers, next(c for c in cells if c[0] == "llama-lora-adapted")))
    assert re.fullmatch(r"[\d.]+ \[[\d.]+, [\d.]+\] · n=4 ⚠", shown["win-rate vs base"]), shown
    assert next(c for c in cells if c[0] == "base")[-1].startswith(run["id"])  # the reference counts as evaluated
    code, out, _ = wb("scoreboard", "--csv", "-")
    assert out.splitlines()[0].startswith("model,role,method,parent,lineage") and "llama-lora-adapted" in out


def test_a_cancelled_evaluation_resumes_without_redoing_finished_units(train_env, settings, tiny_base):
    from jobs import control
    from jobs.runner import execute

    write_jsonl(settings.workspace.test_file, sft_rows(12))
    full_model_copy(settings, tiny_base, "copy")
    run = control.create(settings, "evaluate", {"models": ["base", "copy"], "sets": ["test"], "batch_size": 1,
                                                "max_new_tokens": 200})
    results = run.folder / "results"
    worker = threading.Thread(target=execute, args=(settings, run.id))
    worker.start()
    first = wait_for(lambda: (results / "base.test.json").exists() and results / "base.test.json", 120,
                     what="the first model's results")
    control.cancel(settings, run.id)
    worker.join(120)
    status = run_status(settings, run.id)
    assert status["status"] == "cancelled" and status["resumable"], status
    assert not (results / "copy.test.json").exists()
    kept = first.stat().st_mtime_ns, first.read_text()

    control.resume(settings, run.id)  # queued again; this process plays the worker
    status = execute(settings, run.id)
    assert status["status"] == "succeeded", status
    assert (first.stat().st_mtime_ns, first.read_text()) == kept
    assert "resuming: 1 of 2 units already done" in run.read_log()
    report = json.loads((run.folder / "report.json").read_text())
    assert set(report["models"]) == {"base", "copy"} and not report["partial"]
    # the same weights, the same seed and sampling: the same answers and scores
    assert report["models"]["base"]["metrics"] == report["models"]["copy"]["metrics"]


def test_bad_input_is_refused_before_queueing(train_env, wb, settings, tmp_path):
    ws = settings.workspace

    def refused(*args: str) -> str:
        code, _, err = wb("eval", *args)
        assert code == 2, err
        return err

    assert "unknown model 'nope'" in refused("--models", "base,nope")
    assert "set 'test'" in refused("--sets", "test") and "test.jsonl" in refused("--sets", "test")
    assert "need a reward model" in refused("--sets", "preferences")
    code, _, err = ingest(wb, str(three_docs(tmp_path / "docs")))
    assert code == 0, err
    write_jsonl(ws.data / "rag_questions.jsonl", [{"question": "Where is Atlantis?", "sources": ["atlas.pdf"]}])
    assert "not in the corpus: atlas.pdf" in refused("--sets", "rag")
    assert "not one of" in refused("--sets", "everything")
    assert "has no rows" in refused("--sets", "votes") or "feedback.jsonl" in refused("--sets", "votes")
    runs = [r for r in ws.runs.iterdir()] if ws.runs.is_dir() else []
    assert not [r for r in runs if "evaluate" in r.name]  # nothing was queued


def test_probing_how_the_device_computes_leaves_the_random_state_as_it_was():
    """The first process of a workspace probes the device (timings on random tensors and weights)
    and later ones read its decision: the probe must leave the seeded generator where it was, or a
    workspace's first training run would start its LoRA and dropout apart from a rerun's."""
    import torch

    from workbench.models.precision import _probe, device_name

    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    _probe(device_name())
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.slow(25)
def test_the_same_evaluation_twice_gives_the_same_numbers_and_says_how_they_were_computed(train_env, tmp_path):
    """Two processes evaluate the same model on the same sets: every number is the same. The
    first process records how this device computes (``precision.json``); the second reads it,
    and a decision written there is followed even where a timing would choose otherwise."""
    from workbench.models.precision import device_name

    env, ws = train_env, Path(train_env["WORKBENCH_HOME"])
    write_jsonl(ws / "data" / "test.jsonl", sft_rows(16)[12:])

    def evaluate() -> dict:
        result = json.loads(cli(env, "eval", "--models", "base", "--sets", "test", "--max-prompts", "4",
                                "--max-new-tokens", "8", "--json").stdout)
        assert result["status"] == "succeeded", result
        return result

    first, second = evaluate(), evaluate()
    assert first["id"] != second["id"]
    assert first["scores"] == second["scores"] and first["scores"]["base"]["metrics"]["test_loss"] > 0
    recorded = json.loads((ws / "precision.json").read_text())["devices"]
    assert list(recorded) == [device_name()]
    decision = recorded[device_name()]
    environment = second["environment"]
    assert environment["device"] == device_name() and environment["dtype"] == decision["dtype"]
    assert environment["seed"] == 0 and {"torch", "transformers"} <= set(environment["versions"])
    units = [json.loads((ws / "runs" / r["id"] / "results" / "base.test.json").read_text()) for r in (first, second)]
    assert units[0]["answers"] == units[1]["answers"] and units[0]["metrics"] == units[1]["metrics"]

    # the record decides: written as float32 (or bfloat16), every later process computes so
    other = "float32" if decision["dtype"] == "bfloat16" else "bfloat16"
    (ws / "precision.json").write_text(json.dumps({"devices": {device_name(): {**decision, "dtype": other}}}))
    third = evaluate()
    assert third["environment"]["dtype"] == other
    report_html = (ws / "runs" / third["id"] / "report.html").read_text()
    assert f"{other}, full weights, seed 0" in report_html
