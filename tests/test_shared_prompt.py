"""A preference pair run as one sequence (its prompt once, chosen and rejected after it) gives
what two forward passes give: the log-probabilities of the completions (computed from logits
over the completions only) and their gradients, the reward model's scores, with both attention
implementations that take a custom mask."""
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
