"""A preference pair run as one sequence (its prompt once, chosen and rejected after it) gives
what two forward passes give: the log-probabilities of the completions (computed from logits
over the completions only) and their gradients, the reward model's scores, with both attention
implementations that take a custom mask; with the prompts run without gradients, the same values
and the gradients of each row's answer run after its prompt's cache."""
from __future__ import annotations

import pytest
import torch

from workbench.train.shared_prompt import ClassifierPairs, pack, supported, windowed

PAD = 0


def tiny_config(attention: str):
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=PAD, tie_word_embeddings=True)
    config._attn_implementation = attention
    return config


def pair_batch(end: list[int] = ()):
    """Three pairs laid out as TRL lays them out (chosen rows, then rejected rows, right-padded):
    prompts of different lengths, answers of different lengths, one pair whose answers begin
    alike and one whose chosen answer is a prefix of the rejected one; each answer ends with ``end``."""
    g = torch.Generator().manual_seed(0)

    def tokens(n):
        return torch.randint(1, 96, (n,), generator=g).tolist()

    prompts = [tokens(11), tokens(5), tokens(8)]
    answers = [(tokens(4), tokens(7)), ([7, 8] + tokens(3), [7, 8] + tokens(1)), ([9, 9], [9, 9, 4, 5])]
    answers = [(c + list(end), r + list(end)) for c, r in answers]
    rows = [p + c for p, (c, _) in zip(prompts, answers)] + [p + r for p, (_, r) in zip(prompts, answers)]
    completions = [[0] * len(p) + [1] * len(c) for p, (c, _) in zip(prompts, answers)] + \
        [[0] * len(p) + [1] * len(r) for p, (_, r) in zip(prompts, answers)]
    length = max(map(len, rows)) + 2  # padding past the longest row too
    input_ids = torch.tensor([r + [PAD] * (length - len(r)) for r in rows])
    attention_mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows])
    completion_mask = torch.tensor([m + [0] * (length - len(m)) for m in completions])
    return input_ids, attention_mask, completion_mask


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_pair_run_packed_gives_the_completions_log_probabilities_and_gradients_of_two_rows(attention):
    """What DPO reads (each row's log-probability of its completion, as TRL computes it from the
    logits it is handed) and its gradients, from two rows a pair and from the packed run."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(attention)).eval()
    assert supported(model)
    input_ids, attention_mask, completion_mask = pair_batch()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}
    weights = torch.randn(input_ids.shape[0])

    def run(forward, batch):
        model.zero_grad()
        logits = forward(input_ids=batch["input_ids"], attention_mask=attention_mask, use_cache=False).logits
        labels = batch["input_ids"][:, 1:]
        per_token = torch.log_softmax(logits[:, :-1], -1).gather(-1, labels[..., None])[..., 0]
        logps = (per_token * batch["completion_mask"][:, 1:]).sum(dim=1)
        (logps * weights).sum().backward()
        return logps.detach(), logits.shape[1], [p.grad.clone() for p in model.parameters()]

    separate, full_width, separate_grads = run(model, inputs)
    stand_in, cut = windowed(model, inputs)
    packed, window_width, packed_grads = run(stand_in, cut)
    assert torch.allclose(packed, separate, atol=1e-4)
    for a, b in zip(packed_grads, separate_grads):
        assert torch.allclose(a, b, atol=1e-4)
    assert window_width == 8 < full_width  # logits over the longest completion and the token before it
    batch = pack(input_ids, attention_mask)
    assert batch.shared[0] >= 11 and batch.shared[1:] == [7, 10] and batch.chosen[2] == 0
    packed_tokens = sum(p + c + r for p, c, r in zip(batch.shared, batch.chosen, batch.rejected))
    assert packed_tokens < 0.7 * int(attention_mask.sum())  # each prompt is run once


@pytest.mark.parametrize("end", [(), (PAD,)], ids=["plain", "turns-end-with-the-pad-token"])
def test_the_reward_model_scores_each_row_where_it_would_alone(end):
    """At the row's last token, or, where turns end with the pad token (eos as pad), at the token
    before it, as transformers' classifier reads a row alone."""
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(0)
    config = tiny_config("sdpa")
    config.num_labels = 1
    model = LlamaForSequenceClassification(config).eval()
    input_ids, attention_mask, _ = pair_batch(end)
    alone = model(input_ids=input_ids, attention_mask=attention_mask).logits
    packed = ClassifierPairs(model)(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    assert packed.shape == alone.shape == (6, 1)
    assert torch.allclose(packed, alone, atol=1e-5)


def rows_of(input_ids, attention_mask):
    return [row[:int(n)].tolist() for row, n in zip(input_ids, attention_mask.sum(dim=1))]


def shared_tokens(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def after_cached_prompt(model, row: list[int], split: int):
    """The model's output over ``row[split:]``, ``row[:split]`` run first without gradients into
    the model's own key-value cache: one row alone, as generation runs a prompt and then its answer."""
    from transformers import DynamicCache

    cache = DynamicCache()
    with torch.no_grad():
        model(input_ids=torch.tensor([row[:split]]), cache=cache, use_cache=True)
    return model(input_ids=torch.tensor([row[split:]]), cache=cache, use_cache=True)


def grads_of(model) -> list:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_with_the_prompts_frozen_a_packed_pair_gives_the_log_probabilities_and_the_answers_gradients(attention):
    """``prompt_gradients`` off: the log-probabilities of two rows, and the gradients of each row's
    answer run alone after its prompt's cache (the split at the pair's shared tokens, or at the token
    before its first answer token, whichever is first), which differ from the whole rows' gradients."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(attention)).eval()
    input_ids, attention_mask, completion_mask = pair_batch()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}
    weights = torch.randn(input_ids.shape[0])
    rows, pairs = rows_of(input_ids, attention_mask), input_ids.shape[0] // 2
    starts = [int(completion_mask[r].nonzero()[0]) for r in range(len(rows))]  # each row's first answer token

    model.zero_grad()
    stand_in, cut = windowed(model, inputs, prompt_gradients=False)
    logits = stand_in(input_ids=cut["input_ids"], attention_mask=attention_mask, use_cache=False).logits
    labels = cut["input_ids"][:, 1:]
    per_token = torch.log_softmax(logits[:, :-1], -1).gather(-1, labels[..., None])[..., 0]
    frozen = (per_token * cut["completion_mask"][:, 1:]).sum(dim=1)
    (frozen * weights).sum().backward()
    frozen_grads = grads_of(model)

    model.zero_grad()
    alone = []
    for r, row in enumerate(rows):
        i = r % pairs
        split = min(shared_tokens(rows[i], rows[pairs + i]), starts[i] - 1, starts[pairs + i] - 1)
        out = after_cached_prompt(model, row, split).logits[0]
        targets = torch.tensor(row[starts[r]:])
        logp = torch.log_softmax(out[starts[r] - 1 - split:-1], -1).gather(-1, targets[:, None]).sum()
        (logp * weights[r]).backward()
        alone.append(logp.detach())
    assert torch.allclose(frozen.detach(), torch.stack(alone), atol=1e-4)
    for a, b in zip(frozen_grads, grads_of(model)):
        assert torch.allclose(a, b, atol=1e-4)

    model.zero_grad()
    whole = windowed(model, inputs)[0](input_ids=cut["input_ids"], attention_mask=attention_mask).logits
    (torch.log_softmax(whole[:, :-1], -1).gather(-1, labels[..., None])[..., 0] * cut["completion_mask"][:, 1:]
     ).sum(dim=1).mul(weights).sum().backward()
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(frozen_grads, grads_of(model)))
    with torch.no_grad():  # out of training the prompts run packed as before
        assert torch.allclose(stand_in(input_ids=cut["input_ids"]).logits, whole.detach(), atol=1e-5)


@pytest.mark.parametrize("end", [(), (PAD,)], ids=["plain", "turns-end-with-the-pad-token"])
def test_with_the_prompts_frozen_the_reward_model_scores_each_row_as_alone_with_the_answers_gradients(end):
    """The reward model with ``prompt_gradients`` off: each row's score where it would be alone, and
    the gradients of each row's answer scored alone after its prompt's cache."""
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(0)
    config = tiny_config("sdpa")
    config.num_labels = 1
    model = LlamaForSequenceClassification(config).eval()
    input_ids, attention_mask, _ = pair_batch(end)
    weights = torch.randn(input_ids.shape[0], 1)
    alone = model(input_ids=input_ids, attention_mask=attention_mask).logits.detach()

    model.zero_grad()
    scores = ClassifierPairs(model, prompt_gradients=False)(input_ids=input_ids, attention_mask=attention_mask).logits
    (scores * weights).sum().backward()
    frozen_grads = grads_of(model)
    assert torch.allclose(scores.detach(), alone, atol=1e-5)

    model.zero_grad()
    rows, pairs = rows_of(input_ids, attention_mask), input_ids.shape[0] // 2
    scored = [len(r) - 1 - (bool(end) and r[-1] == PAD) for r in rows]  # a trailing pad token is not read
    for r, row in enumerate(rows):
        i = r % pairs
        split = min(shared_tokens(rows[i], rows[pairs + i]), scored[i], scored[pairs + i])
        score = after_cached_prompt(model, row[:scored[r] + 1], split).logits
        assert torch.allclose(score.detach(), alone[r], atol=1e-5)
        (score * weights[r]).sum().backward()
    for a, b in zip(frozen_grads, grads_of(model)):
        assert torch.allclose(a, b, atol=1e-4)


def test_a_batch_not_laid_out_as_pairs_runs_as_it_is():
    from transformers import LlamaForCausalLM

    input_ids, attention_mask, completion_mask = pair_batch()
    assert pack(input_ids[:5], attention_mask[:5]) is None  # an odd row count
    assert pack(input_ids.flip(1), attention_mask.flip(1)) is None  # left padding
    model = LlamaForCausalLM(tiny_config("sdpa")).eval()
    left = {"input_ids": input_ids.flip(1), "attention_mask": attention_mask.flip(1),
            "completion_mask": completion_mask.flip(1)}
    assert windowed(model, left) is None
    model.config.sliding_window = 4  # attends through a window, which the packed mask does not draw
    assert not supported(model)
    model.config.sliding_window = None
    model.config._attn_implementation = "flash_attention_2"  # takes no custom mask
    assert not supported(model)
    assert windowed(model, {"input_ids": input_ids, "attention_mask": attention_mask,
                            "completion_mask": completion_mask}) is None


@pytest.mark.slow(15)
def test_dpo_with_the_chosen_answers_cross_entropy_trains_the_same_packed(pulled_base, tmp_path):
    """``sft_weight`` adds TRL's ``"sft"`` loss, which reads the chosen rows as the first half of
    the batch: run packed, a step's loss is the two-row run's, and the term is there. The
    reference is another model, so DPO's own term depends on the layout too."""
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaForCausalLM
    from trl import DPOConfig

    from workbench.train.dpo import Config, losses
    from workbench.train.shared_prompt import dpo_trainer

    tokenizer = AutoTokenizer.from_pretrained(pulled_base[1])
    config = tiny_config("sdpa")
    config.vocab_size, config.pad_token_id = len(tokenizer), tokenizer.pad_token_id
    pairs = Dataset.from_list([{"prompt": f"Question {i}: où est la clé ?\n\nContext:\nLa clé est sous le pot {i}.",
                                "chosen": f"Sous le pot {i}.", "rejected": "La documentation ne répond pas."}
                               for i in range(4)])
    loss = {}
    for packed in (True, False):
        for weight in (0.0, 1.0):
            torch.manual_seed(1)
            reference = LlamaForCausalLM(config)
            torch.manual_seed(0)
            model = LlamaForCausalLM(config)
            args = DPOConfig(output_dir=str(tmp_path / f"{packed}-{weight}"), per_device_train_batch_size=4,
                             max_steps=1, logging_steps=1, report_to="none", use_cpu=True, bf16=False,
                             save_strategy="no", learning_rate=1e-3, max_length=128, precompute_ref_log_probs=True,
                             **losses(Config(sft_weight=weight)))
            trainer = dpo_trainer(packed)(model=model, ref_model=reference, args=args,
                                          train_dataset=pairs, processing_class=tokenizer)
            trainer.train()
            loss[packed, weight] = trainer.state.log_history[0]["loss"]
    for weight in (0.0, 1.0):
        assert loss[True, weight] == pytest.approx(loss[False, weight], abs=1e-3)
    assert abs(loss[True, 0.0] - 0.6931) > 0.01  # not ln 2: the policy is not its reference
    # an untrained model's cross-entropy over a 49k vocabulary is about ln(49152) = 10.8
    assert loss[True, 1.0] - loss[True, 0.0] > 5


@pytest.mark.slow(10)
def test_the_trainers_train_an_adapter_with_the_prompts_frozen(pulled_base, tmp_path):
    """Through TRL's trainers and a LoRA adapter, as the jobs run them: with ``prompt_gradients``
    off the first step's loss is the one with the prompts' gradients (the same forward pass), and
    the step moves the adapter elsewhere (other gradients)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, LlamaForCausalLM, LlamaForSequenceClassification
    from trl import DPOConfig, RewardConfig

    from workbench.train.shared_prompt import dpo_trainer, reward_trainer

    tokenizer = AutoTokenizer.from_pretrained(pulled_base[1])
    pairs = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Où est la clé {i} ?\n\nContext:\n"
                                            f"La clé {i} est sous le pot de fleurs, près de la porte du jardin."}],
                                "chosen": [{"role": "assistant", "content": f"Sous le pot {i}."}],
                                "rejected": [{"role": "assistant", "content": "La documentation ne répond pas."}]}
                               for i in range(4)])
    common = dict(per_device_train_batch_size=4, max_steps=1, logging_steps=1, report_to="none", use_cpu=True,
                  bf16=False, save_strategy="no", learning_rate=1.0, optim="sgd", max_length=128,  # moves as its gradients
                  activation_checkpointing=False)  # on by default in TRL, and with it the prompts keep their gradients
    for method in ("reward", "dpo"):
        loss, moved = {}, {}
        for prompt_gradients in (True, False):
            config = tiny_config("sdpa")
            config.vocab_size, config.pad_token_id = len(tokenizer), tokenizer.pad_token_id
            torch.manual_seed(0)
            out = str(tmp_path / f"{method}-{prompt_gradients}")
            if method == "reward":
                config.num_labels = 1
                model = LlamaForSequenceClassification(config)
                trainer = reward_trainer(True, prompt_gradients)(
                    model=model, args=RewardConfig(output_dir=out, **common), train_dataset=pairs,
                    processing_class=tokenizer, peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                       task_type="SEQ_CLS"))
            else:
                model = LlamaForCausalLM(config)
                trainer = dpo_trainer(True, prompt_gradients)(
                    model=model, ref_model=None, args=DPOConfig(output_dir=out, precompute_ref_log_probs=True, **common),
                    train_dataset=pairs, processing_class=tokenizer,
                    peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
            before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
            trainer.train()
            loss[prompt_gradients] = trainer.state.log_history[0]["loss"]
            moved[prompt_gradients] = torch.cat([(p.detach() - before[n]).flatten()
                                                 for n, p in trainer.model.named_parameters() if n in before])
        assert loss[False] == pytest.approx(loss[True], abs=1e-5), method
        assert moved[False].abs().max() > 0, method  # the adapter learned
        assert not torch.allclose(moved[False], moved[True], atol=1e-6), method  # from other gradients


def test_prompts_without_gradients_are_the_reward_models_default_where_the_pairs_are_packed():
    """Off by default for the reward model, on for DPO; with the pairs as two rows (``share_prompt``
    off) the prompts keep their gradients, and the memory estimate counts their activations."""
    from workbench.train import dpo, reward

    assert reward.Config().prompt_gradients is False and dpo.Config().prompt_gradients is True
    for method in (reward, dpo):
        for share_prompt in (True, False):
            config = method.Config(prompt_gradients=False, share_prompt=share_prompt)
            config.validate()
            assert method.memory_shape(config).frozen_prompt is share_prompt
