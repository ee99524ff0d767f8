"""Training that fits the machine: the memory model on the default model's real shape (the
logits over its 49k-token vocabulary outweigh its weights), the micro-batch that halves to
fit with the effective batch kept, a run that cannot fit refused before anything is queued, one
that can started at the micro-batch that fits, prompts cut from their context side, and a split
too small to measure refused with the number needed."""
from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import pytest

from tests.helpers import preference_pairs, write_jsonl
from workbench.kinds import get_kind
from workbench.train import memory
from workbench.train.dpo import Config as DpoConfig
from workbench.train.dpo import memory_shape as dpo_shape


def test_the_micro_batch_halves_to_fit_and_keeps_the_effective_batch(pulled_base):
    facts = memory.model_facts(pulled_base[1])
    assert facts["vocab"] == 49152 and facts["parameters"] > 100e6
    shape = dpo_shape(DpoConfig())
    config = DpoConfig(batch_size=4, grad_accum=2, gradient_checkpointing="auto")

    def need(batch, checkpointing=False):
        return memory.need(facts, shape, batch, 1024, cuda=False, checkpointing=checkpointing).bytes

    at4 = memory.need(facts, shape, 4, 1024, cuda=False)
    assert at4.parts["activations"] > at4.parts["logits"] > 2 * at4.parts["weights"]
    assert memory.fit(facts, shape, config, 1024, need(4), cuda=False).batch_size == 4

    fitted = memory.fit(facts, shape, config, 1024, need(2) + 1, cuda=False)
    assert (fitted.batch_size, fitted.grad_accum, fitted.gradient_checkpointing, fitted.fits) == (2, 4, False, True)
    assert fitted.changes(config) == {"batch_size": 2, "grad_accum": 4}

    fitted = memory.fit(facts, shape, config, 1024, need(1, True) + 1, cuda=False)
    assert (fitted.batch_size, fitted.grad_accum, fitted.gradient_checkpointing, fitted.fits) == (1, 8, True, True)
    assert fitted.changes(config) == {"batch_size": 1, "grad_accum": 8, "gradient_checkpointing": "on"}

    fitted = memory.fit(facts, shape, config, 1024, need(1, True) - 1, cuda=False)
    assert not fitted.fits and fitted.batch_size == 1
    off = dataclasses.replace(config, gradient_checkpointing="off")
    assert not memory.fit(facts, shape, off, 1024, need(1, True) + 1, cuda=False).gradient_checkpointing


def test_a_grpo_run_fitted_to_a_smaller_micro_batch_keeps_whole_groups(pulled_base):
    """GRPO samples a step's answers together (TRL's generation batch: micro-batch x accumulation),
    so a micro-batch of 2 with 2 accumulation steps still holds a whole group of 4 per prompt."""
    from workbench.configs import config_from_dict
    from workbench.train.grpo import Config as GrpoConfig
    from workbench.train.grpo import memory_shape as grpo_shape

    facts, config = memory.model_facts(pulled_base[1]), GrpoConfig()
    shape = grpo_shape(config)
    fitted = memory.fit(facts, shape, config, 1024, memory.need(facts, shape, 2, 1024, cuda=False).bytes + 1, cuda=False)
    assert fitted.changes(config) == {"batch_size": 2, "grad_accum": 2}
    refitted = config_from_dict(GrpoConfig, {**dataclasses.asdict(config), **fitted.changes(config)})
    assert refitted.steps_per_pass(50) == config.steps_per_pass(50) == 50  # one prompt a step either way
    with pytest.raises(ValueError, match="whole groups"):
        config_from_dict(GrpoConfig, {"batch_size": 2, "grad_accum": 1})


def test_dpo_counts_logits_over_the_completions_only_where_its_start_model_packs(pulled_base, tmp_path):
    facts = memory.model_facts(pulled_base[1])
    assert facts["logits_cut"]  # a Llama-family decoder, no sliding window, SDPA by default, no router
    packed, rows = dpo_shape(DpoConfig()), dpo_shape(DpoConfig(share_prompt=False))

    def logits(shape, model=facts, completion=160):
        return memory.need(model, shape, 4, 1088, cuda=False, precision="bf16", completion=completion).parts["logits"]

    assert logits(packed) == 4 * 2 * 160 * facts["vocab"] * 4 * memory.LOGIT_COPIES
    assert logits(rows) == logits(packed, completion=0) == 4 * 2 * 1088 * facts["vocab"] * 4 * memory.LOGIT_COPIES
    config = json.loads((Path(pulled_base[1]) / "config.json").read_text())
    for name, change in (("sliding", {"sliding_window": 4096}), ("other", {"model_type": "gpt2"}),
                         ("experts", {"model_type": "mixtral", "num_local_experts": 4})):  # a router: every logit
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        other = memory.model_facts(folder)
        assert not other["logits_cut"] and logits(packed, other) == logits(rows, other)  # every token's logits
    (tmp_path / "sliding" / "config.json").write_text(json.dumps({**config, "sliding_window": 4096,
                                                                 "use_sliding_window": False}))
    assert memory.model_facts(tmp_path / "sliding")["logits_cut"]  # a window the model does not use


def test_prompts_without_gradients_keep_activations_for_the_answers_only(pulled_base, tmp_path):
    """With ``prompt_gradients`` off a step keeps the answers' activations and the whole pair's
    keys and values, not the prompt's activations: the estimate grows with the answers, hardly
    with the prompt; gradient checkpointing, or a model that runs two rows a pair, keeps them."""
    from storage import Workspace
    from workbench.train.estimate import estimate
    from workbench.train.reward import Config as RewardConfig
    from workbench.train.reward import memory_shape as reward_shape

    facts = memory.model_facts(pulled_base[1])
    assert facts["packs"] and facts["kv_width"] == 192  # 3 key-value heads of 64
    for config_class, shape_of in ((RewardConfig, reward_shape), (DpoConfig, dpo_shape)):
        trained, frozen = shape_of(config_class(prompt_gradients=True)), shape_of(config_class(prompt_gradients=False))
        assert frozen.frozen_prompt and not trained.frozen_prompt

        def activations(shape, sequence=960, completion=80, model=facts, **kwargs):
            return memory.need(model, shape, 4, sequence, cuda=False, completion=completion, **kwargs).parts["activations"]

        assert activations(frozen) < activations(trained) / 5
        longer_prompt = activations(frozen, sequence=1960) - activations(frozen)
        longer_answers = activations(frozen, sequence=1960, completion=1080) - activations(frozen, sequence=1960)
        assert 0 < longer_prompt < longer_answers / 5  # a prompt token costs its keys and values only
        assert activations(frozen, checkpointing=True) == activations(trained, checkpointing=True)
        assert activations(frozen, completion=0) == activations(trained)  # no answer length: the whole row
        rows = tmp_path / config_class.__module__.rsplit(".", 1)[-1]
        rows.mkdir()
        config = json.loads((Path(pulled_base[1]) / "config.json").read_text())
        (rows / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
        two_rows = memory.model_facts(rows)
        assert not two_rows["packs"] and activations(frozen, model=two_rows) == activations(trained, model=two_rows)

        def estimated(config):  # no earlier run to time: a step's FLOPs, the prompts forward only when frozen
            return estimate("train", config, pulled_base[1], 100, Workspace(tmp_path / "ws"), False, 960,
                            shape_of(config), 64 * memory.GIB, completion=80)

        slow, fast = estimated(config_class(prompt_gradients=True)), estimated(config_class(prompt_gradients=False))
        assert fast["seconds"] < slow["seconds"] / 2 and fast["memory_gib"] < slow["memory_gib"] / 3


@pytest.mark.slow(16)
def test_a_run_is_refused_when_it_cannot_fit_and_started_at_the_micro_batch_that_does(train_env, wb, settings,
                                                                                     tiny_base, monkeypatch):
    write_jsonl(settings.workspace.data / "dataset_rlhf.jsonl", preference_pairs(24))
    monkeypatch.setenv("WORKBENCH_TRAIN_MEMORY_GB", "0.3")  # less than torch itself takes
    code, out, err = wb("train", "dpo", "--max-steps", "1", "--max-length", "128")
    assert code == 2 and "does not fit on this machine even at micro-batch 1" in err, err
    assert "GiB of RAM for training (WORKBENCH_TRAIN_MEMORY_GB)" in err
    assert not settings.workspace.runs.exists() or not any(settings.workspace.runs.iterdir())

    facts, shape = memory.model_facts(tiny_base), dpo_shape(DpoConfig())
    kind = get_kind("train.dpo")
    completion = kind.preflight(kind.config({"max_length": 128}), settings).summary["completion_tokens"]
    between = sum(memory.need(facts, shape, batch, 128, cuda=False, completion=completion).bytes for batch in (2, 4)) / 2
    monkeypatch.setenv("WORKBENCH_TRAIN_MEMORY_GB", f"{between / memory.GIB:.4f}")
    code, out, err = wb("train", "dpo", "--max-steps", "1", "--max-length", "128", "--batch-size", "4", "--json")
    data = json.loads(out)
    assert data["status"] == "succeeded", (data, err)
    log = Path(data["folder"], "log.txt").read_text()
    assert "to fit in memory: batch_size 2, grad_accum 2" in log
    status = json.loads(Path(data["folder"], "status.json").read_text())
    assert status["memory_fit"]["batch_size"] == 2
    assert 0 < status["preflight"]["completion_tokens"] < status["preflight"]["sequence_tokens"]  # what the fit counted
    trained = json.loads((settings.workspace.models / "llama-dpo" / "manifest.json").read_text())["config"]
    assert (trained["batch_size"], trained["grad_accum"]) == (2, 2)  # the same effective batch of 4


@pytest.mark.slow(31)
def test_long_rag_prompts_lose_their_context_end_and_tiny_splits_are_refused(train_env, wb, settings):
    context = " ".join(f"Fact {i}: the valve of line {i} opens at {i * 7} bar." for i in range(120))
    pairs = [{"prompt": f"Question {i}: when does valve {i} open?\n\nContext:\n{context}",
              "chosen": f"At {i * 7} bar.", "rejected": "I do not know."} for i in range(12)]
    write_jsonl(settings.workspace.data / "dataset_rlhf.jsonl", pairs)
    code, out, err = wb("train", "reward", "--max-steps", "1", "--max-prompt-length", "256", "--json")
    data = json.loads(out)
    assert data["status"] == "succeeded", (data, err)
    log = Path(data["folder"], "log.txt").read_text()
    assert "12 of 12 prompts cut to max_prompt_length 256 tokens" in log
    assert "7 training pairs, 5 held out" in log

    write_jsonl(settings.workspace.data / "dataset_rlhf.jsonl", preference_pairs(8))
    code, out, err = wb("train", "dpo", "--max-steps", "1")
    assert code == 2 and "8 prompts with pairs: holding some out needs at least 10" in err and "collect 2 more" in err
    assert wb("train", "dpo", "--max-steps", "1", "--eval-dataset", "none", "--output-name", "no-eval")[0] == 0


def test_the_train_tab_says_when_there_are_too_few_votes(settings):
    """Under the votes that taught a reward model in the benchmark, the Train tab says so."""
    from workbench.train.overview import dataset_summary, needs_text
    from workbench.train.reward import WORTH_RUNNING

    ws = settings.workspace.ensure()
    write_jsonl(ws.data / "few.jsonl", preference_pairs(10))
    write_jsonl(ws.data / "enough.jsonl", preference_pairs(WORTH_RUNNING))
    assert dataset_summary("reward", ws, "few.jsonl").startswith(f"**Only 10 pairs:** under the {WORTH_RUNNING}")
    assert "Only" not in dataset_summary("reward", ws, "enough.jsonl")
    assert "Only" not in dataset_summary("grpo", ws, "few.jsonl")  # no measurement for GRPO: nothing claimed
    assert "prompts" in dataset_summary("grpo", ws, "few.jsonl")
    assert f"about {WORTH_RUNNING} votes" in needs_text("reward")
    from workbench.train import dpo

    write_jsonl(ws.data / "enough_for_dpo.jsonl", preference_pairs(dpo.WORTH_RUNNING))
    assert dataset_summary("dpo", ws, "few.jsonl").startswith(f"**Only 10 pairs:** under the {dpo.WORTH_RUNNING}")
    assert "Only" not in dataset_summary("dpo", ws, "enough_for_dpo.jsonl")
    assert f"about {dpo.WORTH_RUNNING} votes" in needs_text("dpo")


def test_dpo_says_before_the_launch_when_written_answers_would_not_be_learned_as_answers(train_env, wb, settings):
    """Annotators' written answers (Annotate's "write a better answer", in French here) merged
    into the pairs: the DPO estimate and the launch's preflight say that at sft_weight 0 they are
    learned as better than what they stand against, not as answers to give; at sft_weight 1, and
    for the reward model, nothing is said."""
    from workbench.train.estimate import estimate_text

    ws = settings.workspace
    plain = estimate_text(settings, "train.dpo", {})  # pairs without written answers
    assert "GiB" in plain and "annotator wrote" not in plain, plain
    written = "La documentation ne répond pas à cette question."
    votes = [{**pair, "annotator": "alice"} for pair in preference_pairs(24)]
    votes += [{"pair_id": f"w{i}", "prompt": f"Quelle est la pression de la vanne {i} ?\n\nContext:\nRien.",
               "answer_a": f"La vanne {i} s'ouvre à {i} bar.", "answer_b": "Je ne sais pas.", "choice": "both_bad",
               "edited_answer": written, "annotator": "alice", "comment": "réponse inventée"} for i in range(3)]
    write_jsonl(ws.home / "votes.jsonl", votes)
    assert wb("feedback", "import", str(ws.home / "votes.jsonl"))[0] == 0
    assert wb("merge-feedback")[0] == 0
    rows = [json.loads(line) for line in (ws.data / "dataset_rlhf.jsonl").read_text().splitlines()]
    assert sum(r["chosen"] == written for r in rows) == 6  # chosen against both answers of each pair

    text = estimate_text(settings, "train.dpo", {})
    assert "⚠ 6 pairs of 30 have a chosen answer an annotator wrote. At sft_weight 0" in text, text
    assert "GiB" in text  # the estimate itself is still there
    assert "annotator wrote" not in estimate_text(settings, "train.dpo", {"sft_weight": 1})
    assert "annotator wrote" not in estimate_text(settings, "train.reward", {})
    kind = get_kind("train.dpo")
    assert any("annotator wrote" in w for w in kind.preflight(kind.config({}), settings).warnings)


def test_every_kinds_launch_warnings_show_under_its_estimate(train_env, settings):
    """The Train tab's estimate carries the warnings the launch would give, whatever the kind:
    QLoRA asked for on a machine without CUDA says it is many times slower than LoRA, under SFT's
    and DPO's estimates alike (the workspace's SFT rows and pairs), and the launch's preflight says
    the same."""
    from workbench.train.estimate import estimate_text
    from workbench.train.modeling import cuda_available

    if cuda_available():
        pytest.skip("QLoRA on a GPU is what it is for: nothing to warn about")
    for kind in ("train.sft", "train.dpo"):
        plain = estimate_text(settings, kind, {})
        assert "GiB" in plain and "⚠" not in plain, (kind, plain)
        text = estimate_text(settings, kind, {"quantization": "4bit"})
        assert "GiB" in text and "\n\n⚠ QLoRA without a CUDA GPU" in text, (kind, text)
        spec = get_kind(kind)
        assert any("many times slower than LoRA" in w
                   for w in spec.preflight(spec.config({"quantization": "4bit"}), settings).warnings), kind


@pytest.mark.slow(20)
def test_a_cpu_trains_in_the_precision_its_workspace_recorded(train_env, wb, settings):
    """On a CPU, ``precision=auto`` follows the decision inference follows (``precision.json``):
    bf16 where it was recorded as paying, else fp32; the memory estimate before the run reads the
    same record."""
    from workbench.models.precision import device_name
    from workbench.train.modeling import cuda_available

    if cuda_available():
        pytest.skip("a GPU trains in bf16 or fp16 whatever a CPU's record says")
    ws = settings.workspace.ensure()
    write_jsonl(ws.data / "dataset_rlhf.jsonl", preference_pairs(24))
    for dtype, name in (("bfloat16", "bf16"), ("float32", "fp32")):
        decision = {"device": "cpu", "dtype": dtype, "int8_decode": False, "device_name": device_name(),
                    "decided": "2026-01-01T00:00:00Z"}
        (ws.home / "precision.json").write_text(json.dumps({"devices": {device_name(): decision}}))
        code, out, err = wb("train", "dpo", "--max-steps", "1", "--max-length", "128", "--output-name", f"dpo-{name}",
                            "--json")
        data = json.loads(out)
        assert data["status"] == "succeeded", (data, err)
        assert f"), {name}, gradient checkpointing" in Path(data["folder"], "log.txt").read_text()
        assert json.loads((ws.models / f"dpo-{name}" / "manifest.json").read_text())["precision"] == name
        assert memory.precision_of(DpoConfig(), False, ws) == name  # what the estimate before the run used


def test_the_time_estimate_reads_earlier_runs_with_the_same_speed_options(train_env, settings):
    """A step's time comes from earlier runs of the method whose options that change it (pairs
    packed, the prompts' gradients, the precision) are the same, scaled to the rows a step takes;
    a run recorded before ``prompt_gradients`` existed had it on, and pairs not packed keep their
    prompts' gradients whatever it says. With none to read, it comes from the FLOPs of a step."""
    from storage import RunStore
    from workbench.train.estimate import estimate_for
    from workbench.train.reward import Config

    store = RunStore(settings.workspace.runs)
    for options, steps_per_s in (({}, 0.25), ({"prompt_gradients": False}, 1.0),
                                 ({"share_prompt": False, "prompt_gradients": True}, 0.125)):
        recorded = dataclasses.asdict(Config(**options))
        if not options:
            del recorded["prompt_gradients"]  # recorded before the option was there
        store.create("train.reward", recorded, "gpu").add_metrics({"step": 1, "steps_per_s": steps_per_s})
    assert "(1.00 s a step, measured in earlier runs" in estimate_for(settings, "train.reward", {})["text"]
    assert "(4.00 s a step, measured in earlier runs" in \
        estimate_for(settings, "train.reward", {"prompt_gradients": True})["text"]
    assert "(8.00 s a step, measured in earlier runs" in \
        estimate_for(settings, "train.reward", {"share_prompt": False})["text"]
    # twice the rows a step, twice the time; another precision has not been measured
    assert "(2.00 s a step, measured in earlier runs" in estimate_for(settings, "train.reward", {"grad_accum": 2})["text"]
    assert "from the FLOPs of a step" in estimate_for(settings, "train.reward", {"precision": "fp32"})["text"]
    assert "from the FLOPs of a step" in estimate_for(settings, "train.reward", {"model": "base"})["text"]


def test_the_reward_model_takes_more_steps_than_dpo_from_the_same_votes(train_env, settings):
    """With ``epochs`` 0 a run takes at least ``min_steps`` optimizer steps, in at most six
    passes: 100 pairs at the batch of 4 are 25 steps a pass, so the reward model (at least 100)
    makes four passes where DPO (at least 32) makes two; ``epochs`` overrides it."""
    from workbench.configs import ConfigError
    from workbench.train.estimate import estimate_for

    ws = settings.workspace.ensure()
    write_jsonl(ws.data / "hundred.jsonl", preference_pairs(100))
    write_jsonl(ws.data / "eight.jsonl", preference_pairs(8))
    plain = {"dataset": "hundred.jsonl", "eval_dataset": "none"}
    assert estimate_for(settings, "train.reward", plain)["steps"] == 100
    assert estimate_for(settings, "train.dpo", plain)["steps"] == 50
    assert estimate_for(settings, "train.reward", {**plain, "min_steps": 32})["steps"] == 50
    assert estimate_for(settings, "train.reward", {**plain, "epochs": 1})["steps"] == 25
    assert estimate_for(settings, "train.reward", {**plain, "dataset": "eight.jsonl"})["steps"] == 12  # six passes at most
    with pytest.raises((ConfigError, ValueError), match="min_steps"):
        get_kind("train.reward").config({"min_steps": 0})


def test_weights_are_counted_in_the_dtype_each_precision_loads_them_in(pulled_base):
    """fp16 training keeps fp32 weights (autocast does the half-precision work), so its weights
    and the models beside the policy count 4 bytes a parameter, as fp32's do; bf16's count 2.
    The estimate and the loader read the same table."""
    from workbench.train.modeling import choose_precision
    from workbench.train.ppo import Config as PpoConfig
    from workbench.train.ppo import memory_shape as ppo_shape

    facts = memory.model_facts(pulled_base[1])
    params, shape = facts["parameters"], ppo_shape(PpoConfig())

    def parts(precision):
        return memory.need(facts, shape, 1, 256, cuda=True, precision=precision).parts

    assert parts("fp16")["weights"] == parts("fp32")["weights"] == 4 * params
    assert parts("fp16")["other_models"] == 2 * 4 * params  # the reward and value models, each the policy's size here
    assert parts("bf16")["weights"] == 2 * params
    assert parts("fp16")["activations"] == parts("bf16")["activations"] < parts("fp32")["activations"]
    for name in ("fp32", "bf16"):  # fp16 loads only on a CUDA GPU
        assert choose_precision(name).dtype.itemsize * params == parts(name)["weights"], name


def _reward_model(folder: Path, base: Path, hidden: int) -> int:
    """A sequence-classification model on the base's tokenizer, ``hidden`` wide; its parameters
    as the estimate reads them (from its weights' file size, within a header's bytes)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(base)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "manifest.json").write_text(json.dumps({"kind": "reward-model", "method": "reward"}))
    params = memory.model_facts(folder)["parameters"]
    assert params == pytest.approx(sum(p.numel() for p in model.parameters()), rel=1e-3)
    return params


def test_models_loaded_beside_the_policy_are_counted_at_their_own_size(train_env, settings, tiny_base):
    """PPO loads its reward and value models from the reward model's folder and GRPO its reward
    model: a reward model far larger than the policy is counted at its own size, before the run
    (the preflight, the Train tab's estimate) and at its start (the summary the launch reads).
    The host's RAM is shared by a run's processes, each holding a whole copy, in the estimate as
    at the launch."""
    from workbench.train.estimate import estimate_for

    ws = settings.workspace.ensure()
    reward_params = _reward_model(ws.models / "big_rm", tiny_base, hidden=256)
    small_params = _reward_model(ws.models / "small_rm", tiny_base, hidden=32)
    facts = memory.model_facts(tiny_base)
    assert reward_params > 4 * facts["parameters"]
    for kind, copies in (("train.ppo", 2), ("train.grpo", 1)):
        spec = get_kind(kind)
        config = spec.config({"reward_model": "big_rm"})
        summary = spec.preflight(config, settings).summary
        assert summary["other_model_parameters"] == copies * reward_params, kind
        shape = importlib.import_module(spec.module).memory_shape(config)
        counted = memory.need(facts, shape, 1, 128, cuda=False, others=summary["other_model_parameters"])
        assert counted.parts["other_models"] == copies * reward_params * 4, kind  # fp32 on this workspace's CPU
        big, small = (estimate_for(settings, kind, {"reward_model": name})["memory_gib"] for name in ("big_rm", "small_rm"))
        grown = copies * (reward_params - small_params) * 4 * memory.HEADROOM / memory.GIB
        assert big - small == pytest.approx(grown, abs=0.02), kind
    one = estimate_for(settings, "train.sft", {})
    two = estimate_for(settings, "train.sft", {"num_processes": 2})
    assert "of RAM available" in one["text"] and "to each of" not in one["text"]
    assert "of RAM available to each of 2 processes" in two["text"], two["text"]
