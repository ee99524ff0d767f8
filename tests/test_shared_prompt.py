"""A preference pair run as one sequence (its prompt once, chosen and rejected after it) gives
what two forward passes give: the causal LM's logits and their gradients, the reward model's
scores, with both attention implementations that take a custom mask."""
from __future__ import annotations

import pytest
import torch

from workbench.train.shared_prompt import CausalLMPairs, ClassifierPairs, pack, supported

PAD = 0


def tiny_config(attention: str):
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=PAD, tie_word_embeddings=True)
    config._attn_implementation = attention
    return config


def pair_batch():
    """Three pairs laid out as TRL lays them out (chosen rows, then rejected rows, right-padded):
    prompts of different lengths, answers of different lengths, one pair whose answers begin
    alike and one whose chosen answer is a prefix of the rejected one."""
    g = torch.Generator().manual_seed(0)

    def tokens(n):
        return torch.randint(1, 96, (n,), generator=g).tolist()

    prompts = [tokens(11), tokens(5), tokens(8)]
    answers = [(tokens(4), tokens(7)), ([7, 8] + tokens(3), [7, 8] + tokens(1)), ([9, 9], [9, 9, 4, 5])]
    rows = [p + c for p, (c, _) in zip(prompts, answers)] + [p + r for p, (_, r) in zip(prompts, answers)]
    length = max(map(len, rows)) + 2  # padding past the longest row too
    input_ids = torch.tensor([r + [PAD] * (length - len(r)) for r in rows])
    attention_mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows])
    return input_ids, attention_mask


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_pair_run_packed_gives_the_logits_and_gradients_of_two_rows(attention):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(attention)).eval()
    assert supported(model)
    input_ids, attention_mask = pair_batch()
    real = attention_mask.bool()
    weights = torch.randn(*input_ids.shape, 96)

    def run(forward):
        model.zero_grad()
        logits = forward(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        (logits[real] * weights[real]).sum().backward()
        return logits[real].detach(), [p.grad.clone() for p in model.parameters()]

    separate, separate_grads = run(model)
    packed, packed_grads = run(CausalLMPairs(model))
    assert torch.allclose(packed, separate, atol=1e-5)
    for a, b in zip(packed_grads, separate_grads):
        assert torch.allclose(a, b, atol=1e-4)
    batch = pack(input_ids, attention_mask, torch.float32)
    assert batch.shared[0] >= 11 and batch.shared[1:] == [7, 10] and batch.chosen[2] == 0 and batch.input_ids.shape[1] < input_ids.shape[1] * 2
    packed_tokens = sum(p + c + r for p, c, r in zip(batch.shared, batch.chosen, batch.rejected))
    assert packed_tokens < 0.7 * int(attention_mask.sum())  # each prompt is run once


def test_the_reward_model_scores_each_row_at_its_last_token_as_it_would_alone():
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(0)
    config = tiny_config("sdpa")
    config.num_labels = 1
    model = LlamaForSequenceClassification(config).eval()
    input_ids, attention_mask = pair_batch()
    alone = model(input_ids=input_ids, attention_mask=attention_mask).logits
    packed = ClassifierPairs(model)(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    assert packed.shape == alone.shape == (6, 1)
    assert torch.allclose(packed, alone, atol=1e-5)


def test_a_batch_not_laid_out_as_pairs_runs_as_it_is():
    input_ids, attention_mask = pair_batch()
    assert pack(input_ids[:5], attention_mask[:5], torch.float32) is None  # an odd row count
    assert pack(input_ids.flip(1), attention_mask.flip(1), torch.float32) is None  # left padding
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(tiny_config("sdpa")).eval()
    left = CausalLMPairs(model)(input_ids=input_ids.flip(1), attention_mask=attention_mask.flip(1)).logits
    assert torch.equal(left, model(input_ids=input_ids.flip(1), attention_mask=attention_mask.flip(1)).logits)
    model.config._attn_implementation = "flash_attention_2"  # takes no custom mask
    assert not supported(model)
