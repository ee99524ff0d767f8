"""Training runs as jobs: cancel within a step and resume, ``kill -9`` of the worker then resume
(the step count carries on), two CPU processes (DDP over gloo), QLoRA's CPU path, and every bad
input refused before anything is queued, with the models folder left as it was."""
from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest


from tests.conftest import run_status, wait_for
from tests.helpers import write_jsonl

SLOW_SFT = {"max_steps": 60, "save_steps": 5, "learning_rate": 0.01, "batch_size": 2}


def complete_checkpoints(run_folder: Path) -> list[int]:
    folder = run_folder / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*") if (p / "COMPLETE").exists())


def loss_steps(run_folder: Path) -> list[int]:
    lines = (run_folder / "metrics.jsonl").read_text().splitlines()
    return [m["step"] for m in map(json.loads, lines) if "loss" in m]


def training_children(run_folder: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "workbench.train.child" in cmdline and str(run_folder) in cmdline:
                pids.append(int(entry.name))
    return pids


def finished(settings, run_id, timeout=240):
    return wait_for(lambda: run_status(settings, run_id).get("status") in ("succeeded", "failed", "cancelled")
                    and run_status(settings, run_id), timeout=timeout, what=f"run {run_id} to finish")


@pytest.mark.slow(37)
def test_cancel_then_a_killed_worker_and_each_time_resume_continues(train_env, settings, worker):
    from jobs import control

    run = control.submit(settings, "train.sft", SLOW_SFT)
    wait_for(lambda: complete_checkpoints(run.folder), timeout=180, what="a first complete checkpoint")
    control.cancel(settings, run.id)
    status = finished(settings, run.id)
    assert status["status"] == "cancelled" and status["resumable"], status
    stopped_at = max(loss_steps(run.folder))
    assert complete_checkpoints(run.folder)[-1] == stopped_at < 60  # saved the step it stopped at
    assert not (settings.workspace.models / "llama-lora-adapted").exists()
    assert not [p for p in settings.workspace.models.iterdir() if p.name.startswith(".")]

    # resumed, then its worker killed (kill -9) past the next checkpoint
    control.resume(settings, run.id)
    wait_for(lambda: complete_checkpoints(run.folder)[-1] > stopped_at, timeout=180, what="a checkpoint after the resume")
    os.kill(run_status(settings, run.id)["pid"], signal.SIGKILL)
    status = finished(settings, run.id, timeout=60)
    assert status["status"] == "failed" and status["error"] == "worker lost" and status["resumable"], status
    wait_for(lambda: not training_children(run.folder), timeout=30, what="the training child to die with its worker")
    reached = complete_checkpoints(run.folder)[-1]
    log = run.read_log()
    assert f"resuming from checkpoint-{stopped_at}" in log

    control.resume(settings, run.id)  # on the consumer the supervisor restarted
    status = finished(settings, run.id)
    assert status["status"] == "succeeded", status
    assert status["result"]["global_step"] == 60 and status["attempt"] == 3
    assert f"resuming from checkpoint-{reached}" in run.read_log()
    steps = loss_steps(run.folder)
    assert steps[steps.index(stopped_at) + 1] == stopped_at + 1  # the count carried on, not from 1
    assert min(s for s in steps[::-1][:60 - reached]) > reached
    assert (settings.workspace.models / "llama-lora-adapted" / "adapter_model.safetensors").exists()


@pytest.mark.slow(50)
def test_a_training_child_killed_by_the_kernel_or_a_signal_is_named_as_such(train_env, settings, worker):
    """The child's last line is no cause (on CPU it is an unrelated bitsandbytes warning): a
    SIGKILL, as the out-of-memory killer sends, is reported as such with the memory it reached, and
    another signal by its name."""
    from jobs import control

    run = control.submit(settings, "train.sft", SLOW_SFT)
    wait_for(lambda: loss_steps(run.folder) if (run.folder / "metrics.jsonl").exists() else None,
             timeout=180, what="a first training step")
    os.kill(run_status(settings, run.id)["child_pid"], signal.SIGKILL)
    status = finished(settings, run.id, timeout=60)
    assert status["status"] == "failed", status
    assert re.fullmatch(r"killed by the system \(out of memory\?\): peak \d+\.\d GB of \d+ GB; "
                        r"lower batch_size or max_length", status["error"]), status["error"]

    run = control.submit(settings, "train.sft", SLOW_SFT)  # another signal is named, not the last line
    wait_for(lambda: loss_steps(run.folder) if (run.folder / "metrics.jsonl").exists() else None,
             timeout=180, what="a first training step")
    os.kill(run_status(settings, run.id)["child_pid"], signal.SIGTERM)
    status = finished(settings, run.id, timeout=60)
    assert (status["status"], status["error"]) == ("failed", "training process stopped by SIGTERM"), status


@pytest.mark.slow(40)
def test_ppo_cancel_then_resume_continues_the_step_count(train_env, wb, settings, worker):
    from jobs import control

    assert wb("train", "reward", "--max-steps", "4", "--learning-rate", "0.01")[0] == 0
    run = control.submit(settings, "train.ppo", {"max_steps": 10, "save_steps": 2, "max_completion_length": 4,
                                                 "learning_rate": 0.01, "batch_size": 2})
    wait_for(lambda: complete_checkpoints(run.folder), timeout=180, what="a first complete checkpoint")
    control.cancel(settings, run.id)
    status = finished(settings, run.id)
    assert status["status"] == "cancelled" and status["resumable"], status
    stopped_at = complete_checkpoints(run.folder)[-1]
    control.resume(settings, run.id)
    status = finished(settings, run.id)
    assert status["status"] == "succeeded" and status["result"]["global_step"] == 10, status
    assert "policy adapter loaded" in run.read_log()
    steps = [json.loads(line)["step"] for line in (run.folder / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 10 and steps[steps.index(stopped_at) + 1] == stopped_at + 1
    assert complete_checkpoints(run.folder)[-1] == 10


@pytest.mark.slow(20)
def test_two_cpu_processes_train_data_parallel(train_env, wb, settings):
    code, out, err = wb("train", "sft", "--num-processes", "2", "--max-steps", "2", "--save-steps", "1",
                        "--learning-rate", "0.01", "--json")
    data = json.loads(out)
    assert data["status"] == "succeeded", data
    assert data["result"]["world_size"] == 2 and data["result"]["global_step"] == 2
    assert "2 process(es)" in Path(data["folder"], "log.txt").read_text()
    metrics = [json.loads(line) for line in Path(data["folder"], "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2]  # rank 0 alone writes
    assert any(m.get("samples_per_s") for m in metrics)
    assert (settings.workspace.models / "llama-lora-adapted" / "adapter_model.safetensors").exists()


@pytest.mark.slow(14)
def test_qlora_on_cpu_says_it_is_slow_and_trains_4bit(train_env, wb, settings):
    code, out, err = wb("train", "sft", "--quantization", "4bit", "--max-steps", "1", "--output-name", "q",
                        "--learning-rate", "0.01", "--json")
    assert code == 0, err
    assert "QLoRA without a CUDA GPU" in err and "slower" in err
    data = json.loads(out)
    log = Path(data["folder"], "log.txt").read_text()
    assert "4-bit NF4 (QLoRA)" in log
    assert (settings.workspace.models / "q" / "adapter_model.safetensors").exists()


def _other_tokenizer_reward_model(folder: Path, base: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.add_tokens(["<extra-token>"])
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "manifest.json").write_text(json.dumps({"kind": "reward-model", "method": "reward"}))


def test_bad_input_is_refused_before_anything_is_queued(train_env, wb, settings, tiny_base):
    data = settings.workspace.data
    (data / "empty.jsonl").write_text("")
    (data / "broken.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{not json\n')
    write_jsonl(data / "norejected.jsonl", [{"prompt": "p", "chosen": "c"}])
    write_jsonl(data / "long.jsonl", [{"prompt": "word " * 300, "completion": "ok"}] * 4)
    (settings.workspace.models / "taken").mkdir(parents=True)
    (settings.workspace.models / "taken" / "manifest.json").write_text("{}")
    cases = [
        (["sft", "--dataset", "empty.jsonl"], "has no rows"),
        (["sft", "--dataset", "broken.jsonl"], "line 2: invalid JSON"),
        (["sft", "--dataset", "missing.jsonl"], "no dataset named 'missing.jsonl' in data/"),
        (["dpo", "--dataset", "train.jsonl"], "needs preference pairs"),
        (["reward", "--dataset", "norejected.jsonl"], "line 1: rejected is missing"),
        (["grpo"], "reward model 'reward_model' not found"),
        (["sft", "--model", "nobody"], "unknown model 'nobody'"),
        (["sft", "--lora-r", "0"], "lora_r must be at least 1"),
        (["sft", "--batch-size", "50"], "batch_size 50 is larger than the data (12 rows)"),
        (["sft", "--dataset", "long.jsonl", "--max-length", "64"], "shorter than the longest prompt"),
        (["sft", "--output-name", "taken"], "a model named 'taken' exists"),
        (["sft", "--output-name", "../escape"], "output_name"),
        (["sft", "--precision", "fp8"], "invalid choice"),
        (["sft", "--dataset", "../queue.db"], "no dataset named '../queue.db' in data/"),
        (["reward", "--quantization", "4bit"], "quantization=none"),
        (["sft", "--output-name", "base"], "not 'base'"),
        (["grpo", "--reward-model", "", "--reward-functions", "nonsense"], "'nonsense' is not one of grounding, length"),
        (["grpo", "--batch-size", "3"], "multiple of num_generations"),
        (["grpo", "--reward-model", "", "--reward-functions", "length", "--grad-accum", "20"],
         "a step takes 20 prompts"),
    ]
    for args, expected in cases:
        try:
            code, out, err = wb("train", *args)
        except SystemExit as exc:  # argparse refuses a value outside a field's choices
            code, err = exc.code, "invalid choice"
        assert code == 2 and expected in err, (args, err)

    _other_tokenizer_reward_model(settings.workspace.models / "other_rm", tiny_base)
    code, _, err = wb("train", "grpo", "--reward-model", "other_rm")
    assert code == 2 and "another tokenizer" in err, err
    code, _, err = wb("train", "grpo", "--reward-model", "taken")
    assert code == 2 and "is not a reward model" in err, err
    assert not settings.workspace.runs.exists() or not list(settings.workspace.runs.iterdir())


@pytest.mark.slow(14)
def test_a_failed_run_leaves_the_models_folder_as_it_was(train_env, wb, settings):
    before = sorted(p.name for p in settings.workspace.models.iterdir()) if settings.workspace.models.exists() else []
    code, out, err = wb("train", "sft", "--lora-targets", "no_such_module", "--max-steps", "1", "--json")
    data = json.loads(out)
    assert code == 1 and data["status"] == "failed" and "no_such_module" in data["error"], data
    assert sorted(p.name for p in settings.workspace.models.iterdir()) == before
