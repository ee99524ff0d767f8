"""Training methods on a tiny Llama with the default model's tokenizer: each trains a few real
steps in the torchrun child; every trainable LoRA tensor moves, nothing frozen does, and the
output loads and generates. Lineage, merge, YAML configs and the loss mask are checked too."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import queued_runs, ready_pairs, write_jsonl

FAST = ["--max-steps", "3", "--save-steps", "1", "--learning-rate", "0.01", "--json"]


def result_of(out: str) -> dict:
    data = json.loads(out)
    assert data["status"] == "succeeded", data
    return data


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_lora_trained(output: Path, first_checkpoint: Path) -> None:
    """The adapter holds LoRA tensors only; every B left its zero init and every A moved after step 1."""
    import torch

    final, early = load_tensors(output / "adapter_model.safetensors"), load_tensors(first_checkpoint / "adapter_model.safetensors")
    assert final and all("lora_" in name for name in final), sorted(final)[:5]
    for name, tensor in final.items():
        if "lora_B" in name:
            assert tensor.abs().sum() > 0, f"{name} never left its zero init"
        assert not torch.equal(tensor, early[name]), f"{name} did not change after step 1"


def test_half_precision_trainable_weights_train_in_fp32_and_end_in_their_dtype():
    """The reward model's new head, a bf16 copy in PEFT, keeps fp32 masters while it trains: steps
    under half a bf16 spacing add up instead of rounding away, and the weight ends in bf16."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from workbench.train.modeling import trainable_in_fp32

    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                         num_key_value_heads=2, pad_token_id=0, num_labels=1)
    model = get_peft_model(LlamaForSequenceClassification(config).to(torch.bfloat16),
                           LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj"]))
    head = next(p for name, p in model.named_parameters() if p.requires_grad and "score" in name)
    assert head.dtype == torch.bfloat16
    with torch.no_grad():
        head.fill_(0.08)  # the weight of the docstring: its bf16 spacing is 2**-4 * 2**-7
    before = head.detach().clone()
    spacing = 2.0 ** -4 * torch.finfo(torch.bfloat16).eps
    step = torch.full_like(before, 0.3 * spacing, dtype=torch.float32)
    rounded = before.clone()
    for _ in range(8):
        rounded += step.to(torch.bfloat16)
    assert torch.equal(rounded, before)  # in bf16 each step rounds away
    with trainable_in_fp32(model) as cast:
        assert cast == 1 and all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
        for _ in range(8):
            head.data += step
    assert head.dtype == torch.bfloat16 and torch.all(head.float() - before.float() == 2 * spacing)  # 2.4, rounded


@pytest.mark.slow(10)
def test_sft_trains_every_lora_weight_and_nothing_else(train_env, wb, settings, tiny_base):
    base_hash = sha256(tiny_base / "model.safetensors")
    code, out, err = wb("train", "sft", *FAST)
    data = result_of(out)
    result = data["result"]
    assert result["global_step"] == 3 and result["trainable_changed"] == result["trainable_tensors"] > 0
    output = settings.workspace.models / "llama-lora-adapted"
    assert_lora_trained(output, Path(data["folder"]) / "checkpoints" / "checkpoint-1")
    assert sha256(tiny_base / "model.safetensors") == base_hash  # the frozen base is untouched

    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["method"] == "sft" and manifest["parent"] == "base" and manifest["run_id"] == data["id"]
    assert manifest["dataset"]["sha256"] == sha256(settings.workspace.train_file)
    assert (output / "data" / "train.jsonl").read_bytes() == settings.workspace.train_file.read_bytes()
    assert {"torch", "transformers", "peft", "trl"} <= set(manifest["versions"])
    assert manifest["config"]["lora_r"] == 16 and manifest["loss"] == "assistant replies"

    metrics = [json.loads(line) for line in (Path(data["folder"]) / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]
    assert all({"learning_rate", "grad_norm"} <= set(m) for m in metrics if "loss" in m)
    assert any("steps_per_s" in m for m in metrics)
    checkpoints = Path(data["folder"]) / "checkpoints"
    assert all((c / "COMPLETE").exists() for c in checkpoints.iterdir() if c.name.startswith("checkpoint-"))

    # a new vote merged later never changes what the model claims to have learnt from
    write_jsonl(settings.workspace.train_file, [{"prompt": "new", "completion": "row"}])
    assert json.loads((output / "manifest.json").read_text())["dataset"]["sha256"] == sha256(output / "data" / "train.jsonl")

    from workbench.models.loading import load_for_inference, model_choices, resolve

    model, tokenizer, _ = load_for_inference(resolve("llama-lora-adapted", settings.workspace, str(tiny_base)))
    ids = tokenizer("Hello", return_tensors="pt")
    assert model.generate(**ids, max_new_tokens=4, do_sample=False).shape[1] == ids["input_ids"].shape[1] + 4
    assert ("llama-lora-adapted (sft: base)", "llama-lora-adapted") in model_choices(settings.workspace)


@pytest.mark.slow(11)
def test_merge_exports_a_folder_plain_transformers_loads(train_env, wb, settings, tiny_base):
    import torch
    from transformers import AutoModelForCausalLM

    assert wb("train", "sft", *FAST)[0] == 0
    code, out, err = wb("models", "merge", "llama-lora-adapted", "--into", "sft-merged", "--json")
    assert code == 0, err
    merged_dir = settings.workspace.models / "sft-merged"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, use_safetensors=True)
    from transformers import AutoTokenizer

    from workbench.models.loading import apply_adapters, resolve

    # both in fp32 (inference would pick bf16 on a CPU where it pays, and round differently)
    spec = resolve("llama-lora-adapted", settings.workspace, str(tiny_base))
    adapter = apply_adapters(AutoModelForCausalLM.from_pretrained(spec.path, use_safetensors=True), spec.adapters)
    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    ids = tokenizer("The code word is", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**ids).logits, adapter(**ids).logits, atol=1e-4)
    manifest = json.loads((merged_dir / "manifest.json").read_text())
    assert manifest["method"] == "merge" and manifest["parent"] == "llama-lora-adapted"
    assert not (merged_dir / "adapter_config.json").exists()
    code, _, err = wb("models", "merge", "llama-lora-adapted", "--into", "sft-merged")
    assert code == 2 and "exists" in err
    code, _, err = wb("models", "merge", "sft-merged")
    assert code == 2 and "full model already" in err
    code, _, err = wb("models", "merge", "llama-lora-adapted", "--into", "base", "--overwrite")
    assert code == 2 and "new name" in err


@pytest.mark.slow(82)
def test_reward_model_then_grpo_ppo_and_dpo_from_the_sft_adapter(train_env, wb, settings):
    """Each method trains from the one before, all under the workspace's system prompt, which each
    model's manifest records. Along the way, what a success sets going: a new
    reward model scores the pair sets ordered ``informative`` (the pairs it is least sure of come
    first), and with the arena on a new answering model is put to the vote against its parent."""
    from jobs.runner import execute
    from workbench.feedback.annotation import cast_vote
    from workbench.feedback.arena import ARENA_SET, default_sides, save_arena
    from workbench.feedback.distribution import claim_next_pair
    from workbench.feedback.informative import read_margins
    from workbench.feedback.pairs import pair_store
    from workbench.feedback.sets import save_set
    from workbench.train.config import optimizer_steps
    from workbench.train.grpo import Config as grpo_config

    from workbench.chat.system_prompt import save_system_prompt

    ws = settings.workspace
    save_system_prompt(ws.ensure(), "Réponds en une phrase, fidèle au contexte.", "tom")  # every method trains under it
    save_set(ws, "infos", 1, "informative")
    pairs = ready_pairs(ws, 6, "infos")
    code, _, err = wb("pairs", "score", "--set", "infos")
    assert code == 2 and "no reward model yet" in err
    assert default_sides(settings)[:2] == ("base", "base") and "weak comparison" in default_sides(settings)[2]

    code, out, err = wb("train", "reward", "--max-steps", "8", "--learning-rate", "0.01", "--early-stopping-patience", "0",
                        "--json")
    reward = result_of(out)["result"]
    (score_run,) = queued_runs(settings, "pairs.score")
    assert execute(settings, score_run)["status"] == "succeeded"
    margins = read_margins(ws)
    assert set(margins) == {p.pair_id for p in pairs}
    assert claim_next_pair(ws, "ann").pair_id == min(margins, key=margins.get)
    assert reward["trainable_changed"] == reward["trainable_tensors"] > 0
    assert {"eval_accuracy", "eval_margin", "before_accuracy"} <= set(reward)
    # the run ends on its best held-out evaluation, four in the run, the last step among them
    log = (Path(result_of(out)["folder"]) / "log.txt").read_text()
    seen = re.search(r"held-out eval_accuracy by step: (.*); kept step (\d+)", log)
    scores = {int(step): float(value) for step, value in (item.split(": ") for item in seen.group(1).split(", "))}
    assert sorted(scores) == [2, 4, 6, 8] and reward["kept_step"] == int(seen.group(2))
    # the log's step lines give the method's curves: the held-out accuracy where it was measured
    assert re.search(r"step 2/8: .*eval_accuracy [\d.]+", log), log
    assert reward["kept_eval_accuracy"] == pytest.approx(max(scores.values()), abs=1e-3)
    assert scores[reward["kept_step"]] == pytest.approx(max(scores.values()), abs=1e-3)
    reward_dir = settings.workspace.models / "reward_model"
    from transformers import AutoModelForSequenceClassification

    scorer = AutoModelForSequenceClassification.from_pretrained(reward_dir, use_safetensors=True)
    assert scorer.config.num_labels == 1
    manifest = json.loads((reward_dir / "manifest.json").read_text())
    assert manifest["kind"] == "reward-model" and manifest["parent"] == "base"  # no SFT model yet: auto is the base

    # the micro-batch a tight machine gets: 2 answers, 4 accumulation steps, so a step's 8 answers are
    # 2 prompts' groups of 4 and one pass over the 16 prompts is 8 steps, as the workbench counts them
    code, out, err = wb("train", "grpo", "--epochs", "1", "--batch-size", "2", "--grad-accum", "4",
                        "--max-completion-length", "8", "--reward-functions", "grounding,length",
                        "--learning-rate", "0.01", "--json")
    data = result_of(out)
    assert data["result"]["trainable_changed"] == data["result"]["trainable_tensors"] > 0
    assert data["result"]["global_step"] == optimizer_steps(grpo_config(epochs=1, batch_size=2, grad_accum=4), 16) == 8
    assert "training: 8 steps, 2 rows a step" in (Path(data["folder"]) / "log.txt").read_text()
    metrics = [json.loads(line) for line in (Path(data["folder"]) / "metrics.jsonl").read_text().splitlines()]
    assert any("reward" in m and "kl" in m for m in metrics)
    grpo = json.loads((settings.workspace.models / "llama-grpo" / "manifest.json").read_text())
    assert grpo["reward_model"] == "reward_model" and grpo["reward_functions"] == ["grounding", "length"]

    code, out, err = wb("train", "ppo", "--max-steps", "2", "--max-completion-length", "8", "--learning-rate", "0.01",
                        "--json")
    data = result_of(out)
    assert data["result"]["trainable_changed"] == data["result"]["trainable_tensors"] > 0
    metrics = [json.loads(line) for line in (Path(data["folder"]) / "metrics.jsonl").read_text().splitlines()]
    assert all({"reward", "kl", "entropy", "value_loss"} <= set(m) for m in metrics if m["step"] > 0)
    ppo = json.loads((settings.workspace.models / "llama-rlhf" / "manifest.json").read_text())
    assert ppo["method"] == "ppo" and ppo["value_model"] == "initialised from reward_model"

    assert "arena: on" in wb("pairs", "arena", "--auto", "on", "--prompts", "2")[1]
    save_arena(ws, max_new_tokens=16)
    assert wb("train", "sft", *FAST)[0] == 0
    assert default_sides(settings) == ("llama-lora-adapted", "base", "")  # new pairs: the new model and its parent
    (arena_run,) = queued_runs(settings, "pairs.generate")
    assert execute(settings, arena_run)["status"] == "succeeded"
    arena = [p for p in pair_store(ws).all().values() if p.set_name == ARENA_SET]
    assert len(arena) == 2 and all(p.ready and (p.a.model, p.b.model) == ("llama-lora-adapted", "base") for p in arena)
    vote = cast_vote(ws, arena[0], "ann", "a")
    assert {vote["model_a"].split(" (")[0], vote["model_b"].split(" (")[0]} == {"llama-lora-adapted", "base"}
    code, out, err = wb("train", "dpo", "--model", "llama-lora-adapted", "--output-name", "llama-lora-adapted",
                        "--overwrite")
    assert code == 2 and "one of its ancestors" in err  # it would replace what it trains on
    # the reward model starts from the newest SFT model by default (the launch pins which)
    code, out, err = wb("train", "reward", "--output-name", "rm-on-sft", "--max-steps", "2", "--json")
    data = result_of(out)
    assert data["result"]["trainable_changed"] > 0  # a scoring head on the SFT model
    assert json.loads((settings.workspace.models / "rm-on-sft" / "manifest.json").read_text())["parent"] == \
        "llama-lora-adapted"
    assert "start model llama-lora-adapted" in (Path(data["folder"]) / "log.txt").read_text()
    code, out, err = wb("train", "dpo", "--model", "llama-lora-adapted", *FAST)
    data = result_of(out)
    assert data["result"]["trainable_changed"] == data["result"]["trainable_tensors"] > 0
    assert "before_logp_margin" in data["result"] and "eval_logp_margin" in data["result"]
    dpo_dir = settings.workspace.models / "llama-dpo"
    assert_lora_trained(dpo_dir, Path(data["folder"]) / "checkpoints" / "checkpoint-1")
    manifest = json.loads((dpo_dir / "manifest.json").read_text())
    assert manifest["parent"] == "llama-lora-adapted" and manifest["lineage"] == ["llama-lora-adapted", "base"]

    from workbench.models.loading import available_models, resolve

    spec = resolve("llama-dpo", settings.workspace, train_env["WORKBENCH_BASE_MODEL"])
    assert [Path(a).name for a in spec.adapters] == ["llama-lora-adapted", "llama-dpo"]
    assert {"llama-dpo", "llama-grpo", "llama-lora-adapted"} <= set(available_models(settings.workspace))
    assert "reward_model" not in available_models(settings.workspace)
    for name in ("reward_model", "llama-grpo", "llama-rlhf", "llama-lora-adapted", "rm-on-sft", "llama-dpo"):
        recorded = json.loads((settings.workspace.models / name / "manifest.json").read_text())["system_prompt"]
        assert recorded["version"] == 1 and recorded["text"] == "Réponds en une phrase, fidèle au contexte.", name
    # the memory estimate counts every model each method loaded: the policy and its other models
    from workbench.configs import config_from_dict
    from workbench.train.overview import method_module

    for name in ("reward_model", "llama-grpo", "llama-rlhf", "llama-lora-adapted", "llama-dpo"):
        manifest = json.loads((settings.workspace.models / name / "manifest.json").read_text())
        module = method_module(manifest["method"])
        shape = module.memory_shape(config_from_dict(module.Config, manifest["config"]))
        assert sorted(manifest["metrics"]["models_loaded"]) == sorted(["policy", *shape.other_models]), name


def swapped_held_out(settings):
    """``data/eight.jsonl``: eight pairs; ``data/swapped.jsonl``: the same with chosen and rejected
    swapped, as held-out pairs on which every step that learns the eight does worse."""
    from tests.helpers import preference_pairs

    ws = settings.workspace.ensure()
    pairs = preference_pairs(8)
    write_jsonl(ws.data / "eight.jsonl", pairs)
    write_jsonl(ws.data / "swapped.jsonl", [dict(p, chosen=p["rejected"], rejected=p["chosen"]) for p in pairs])
    return ws


@pytest.mark.slow(10)
def test_early_stopping_ends_a_run_whose_held_out_loss_only_rises(train_env, wb, settings):
    """Held out: the training pairs with chosen and rejected swapped, so each step that learns the
    pairs makes the held-out DPO loss worse. With ``early_stopping_patience`` 1 the run stops at its
    second evaluation and ends on its first; without, it runs all its steps and ends on the same weights."""
    swapped_held_out(settings)
    common = ["--set", "dataset=eight.jsonl", "--set", "eval_dataset=swapped.jsonl", "--set", "eval_steps=1",
              "--max-steps", "5", "--learning-rate", "0.01", "--json"]
    results = {}
    for patience in (1, 0):
        code, out, err = wb("train", "dpo", *common, "--set", f"early_stopping_patience={patience}",
                            "--output-name", f"patience-{patience}")
        data = result_of(out)
        results[patience] = data["result"]
        log = (Path(data["folder"]) / "log.txt").read_text()
        seen = re.search(r"held-out eval_loss by step: (.*); kept step (\d+)", log)
        losses = [float(item.split(": ")[1]) for item in seen.group(1).split(", ")]
        assert losses == sorted(losses) and int(seen.group(2)) == 1, log  # rising from the first
    stopped, whole = results[1], results[0]
    assert (stopped["stopped_early_at"], stopped["global_step"], stopped["kept_step"]) == (2, 2, 1)
    assert "stopped_early_at" not in whole and (whole["global_step"], whole["kept_step"]) == (5, 1)
    # the same weights at step 1: the first run of the workspace, which probed the device, trained as the rerun
    assert stopped["kept_eval_loss"] == whole["kept_eval_loss"]


@pytest.mark.slow(15)
def test_a_run_resumed_from_a_checkpoint_ends_on_the_best_step_before_the_resume(train_env, wb, settings):
    """The held-out pairs are the training pairs swapped, so the first evaluation is the run's best.
    A DPO run whose worker died after step 3's checkpoint, resumed from it, weighs the evaluations
    made before the resume (the checkpoint carries them and the best weights) and ends on step 1's
    weights, as the run that was not interrupted did; its start model is measured as a new run's."""
    import torch
    from safetensors.torch import load_file

    from jobs import control
    from jobs.runner import execute
    from storage import RunStore
    ws = swapped_held_out(settings)
    code, out, err = wb("train", "dpo", "--set", "dataset=eight.jsonl", "--set", "eval_dataset=swapped.jsonl",
                        "--set", "eval_steps=1", "--set", "save_steps=3", "--set", "early_stopping_patience=0",
                        "--max-steps", "5", "--learning-rate", "0.01", "--output-name", "resumed", "--json")
    data = result_of(out)
    whole = data["result"]
    assert (whole["global_step"], whole["kept_step"]) == (5, 1), whole
    adapter = ws.models / "resumed" / "adapter_model.safetensors"
    weights = load_file(str(adapter))

    # what a worker killed after step 3's checkpoint leaves: that checkpoint, no later one, no model
    run = RunStore(ws.runs).get(data["id"])
    checkpoints = run.folder / "checkpoints"
    assert {p.name for p in checkpoints.glob("checkpoint-*")} == {"checkpoint-3", "checkpoint-5"}
    shutil.rmtree(checkpoints / "checkpoint-5")
    shutil.rmtree(ws.models / "resumed")
    assert run.transition({"succeeded"}, "failed", error="worker lost", resumable=True)

    control.resume(settings, run.id)
    status = execute(settings, run.id)
    assert status["status"] == "succeeded", status
    resumed = status["result"]
    assert (resumed["global_step"], resumed["kept_step"]) == (5, 1), resumed
    log = run.read_log()
    assert "resuming from checkpoint-3" in log and "held-out eval_loss before the resume: 1: " in log
    checks = re.findall(r"held-out eval_loss by step: (.*); kept step (\d+)", log)
    assert len(checks) == 2 and checks[0] == checks[1] and checks[1][1] == "1", checks  # all five checks, both times
    assert resumed["kept_eval_loss"] == pytest.approx(whole["kept_eval_loss"], abs=1e-6)
    assert resumed["before_loss"] == pytest.approx(whole["before_loss"], abs=1e-6)
    again = load_file(str(adapter))
    assert again.keys() == weights.keys() and all(torch.equal(again[k], weights[k]) for k in weights)


@pytest.mark.slow(12)
def test_yaml_config_and_set_flags(train_env, wb, settings, tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text("max_steps: 2\nlora_r: 4\nlearning_rate: 0.01\noutput_name: from-yaml\nsave_steps: 5\n"
                      "eval_dataset:\n")  # an empty value keeps the default
    code, out, err = wb("train", "sft", "--config", str(config), "--set", "lora_alpha=8", "--lora-r", "2", "--json")
    data = result_of(out)
    stored = data["config"]["config"]
    assert stored["lora_r"] == 2 and stored["lora_alpha"] == 8 and stored["max_steps"] == 2
    adapter = json.loads((settings.workspace.models / "from-yaml" / "adapter_config.json").read_text())
    assert adapter["r"] == 2 and set(adapter["target_modules"]) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    config.write_text("- not a mapping\n")
    code, _, err = wb("train", "sft", "--config", str(config))
    assert code == 2 and "mapping" in err


def test_training_template_renders_as_the_tokenizers_own_and_masks_the_replies(pulled_base):
    from transformers import AutoTokenizer

    from workbench.train.chat_template import PROBES, renders_identically, training_template

    tokenizer = AutoTokenizer.from_pretrained(pulled_base[1])
    template, source = training_template(tokenizer)
    assert source == "smollm2_training.jinja" and "{% generation %}" in template
    assert renders_identically(tokenizer, template, PROBES)
    out = tokenizer.apply_chat_template(PROBES[1], chat_template=template, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    trained = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tokenizer.decode(trained) == "4<|im_end|>\n6<|im_end|>\n"
