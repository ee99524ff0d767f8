"""One forward pass for each preference pair instead of two: the tokens the chosen and rejected
rows share (their prompt) once, then the rest of the chosen row, then the rest of the rejected
row, which the attention mask keeps from seeing the chosen tokens and whose positions continue
from the prompt (Wang et al., "Accelerating Direct Preference Optimization with Prefix Sharing",
2024). A RAG pair of an 800-token prompt and two 60-token answers costs about 920 tokens instead
of 1,720. DPO's logits are computed over the completions only (``logits_to_keep``): the
vocabulary projection of every prompt token, its log-softmax and their gradients were most of a
DPO step on such pairs (a 4-pair bf16 step on 2 cores: 16.5 s as rows, 7.7 s packed and cut).

The reward model and DPO use it through their trainers (``reward_trainer``, ``dpo_trainer``):
each hands TRL's own loss a stand-in for the model that runs the batch packed and returns what
TRL reads (the reward model's score of each row; DPO's logits over each row's window, with the
rows cut to their windows), so TRL's losses and metrics stay as they are. A test holds the
scores, the completions' log-probabilities and their gradients to two rows a pair. Models whose
attention takes no custom mask (flash-attention kernels), that attend through a sliding window
(the packed mask is plainly causal) or whose family is not a known decoder run two rows a pair.

With ``prompt_gradients`` off, a training step runs each pair's prompt once without gradients and
its answers after it, reading the prompt's cached keys and values (``split_run``): the same scores
and log-probabilities, but the backward pass covers the answers' tokens only, so the weights learn
from how the answers read the prompt, not from how the prompt itself is represented. On
800-token RAG prompts with two 70-token answers most of a step's backward pass was the prompts':
on 2 cores in fp32 a reward-model step took 23.1 s instead of 51.5 and DPO's 35.4 s instead of
55.4, the training process peaking at 3.9 and 4.8 GiB instead of 11.6 and 12.2
(``benchmarks/loop_time.py --against prompt_gradients=false``).
Gradient checkpointing replays a layer in the backward pass, which a cache cannot be part of: a
run with it keeps the prompt's gradients.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workbench.train.modeling import TARGETS_BY_FAMILY

MASKABLE = ("sdpa", "eager")  # attention implementations that take a custom 4D mask


def supported(model) -> bool:
    """Whether ``model`` (a PEFT model, a DDP wrapper or a plain transformers model) can run packed."""
    config = getattr(_unwrap(model), "config", None)
    return config_packs(config, getattr(config, "_attn_implementation", None))


def config_packs(config, attention: str | None = "sdpa") -> bool:
    """Whether a model of this configuration (a transformers config, or the namespace of a
    ``config.json``) runs packed with ``attention``; ``sdpa`` is what the loader leaves a model
    that names none, so a ``config.json`` is read with it."""
    sliding = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    return (getattr(config, "model_type", "") in TARGETS_BY_FAMILY and not sliding  # the mask is plain causal
            and attention in MASKABLE)


def _unwrap(model):
    while hasattr(model, "module"):  # DistributedDataParallel
        model = model.module
    return model


@dataclass
class Packed:
    input_ids: Any  # [pairs, S]: shared tokens, the chosen row's rest, the rejected row's rest, padding
    position_ids: Any  # [pairs, S]
    mask: Any  # [pairs, 1, S, S]: True where a token may attend; additive (0, else the dtype's minimum) with a dtype
    shared: list[int]  # tokens the two rows of each pair share from their start
    chosen: list[int]  # the chosen row's tokens after them
    rejected: list[int]  # the rejected row's tokens after them


def pack(input_ids, attention_mask, dtype=None) -> Packed | None:
    """The packed form of a pair batch: rows ``i`` (chosen) and ``pairs + i`` (rejected),
    right-padded. None when the batch is not of that form (an odd row count, left padding). The
    mask is boolean (what SDPA takes, whatever the autocast dtype), or additive in ``dtype``
    (what eager attention adds to its scores)."""
    import torch

    rows, length = input_ids.shape
    if rows % 2 or attention_mask is None or attention_mask.dim() != 2:
        return None
    lengths = attention_mask.sum(dim=1)
    if not torch.equal(attention_mask.bool(), torch.arange(length, device=lengths.device)[None, :] < lengths[:, None]):
        return None  # not right-padded
    pairs, lengths = rows // 2, lengths.tolist()
    shared, chosen, rejected = [], [], []
    for i in range(pairs):
        a, b = input_ids[i, :lengths[i]], input_ids[pairs + i, :lengths[pairs + i]]
        n = min(len(a), len(b))
        differ = (a[:n] != b[:n]).nonzero()
        p = int(differ[0]) if len(differ) else n
        shared.append(p)
        chosen.append(len(a) - p)
        rejected.append(len(b) - p)
    size = max(p + c + r for p, c, r in zip(shared, chosen, rejected))
    device = input_ids.device
    ids = torch.zeros(pairs, size, dtype=input_ids.dtype, device=device)
    positions = torch.zeros(pairs, size, dtype=torch.long, device=device)
    allowed = torch.zeros(pairs, 1, size, size, dtype=torch.bool, device=device)
    causal = torch.tril(torch.ones(size, size, dtype=torch.bool, device=device))
    for i, (p, c, r) in enumerate(zip(shared, chosen, rejected)):
        end = p + c + r
        ids[i, :p + c] = input_ids[i, :p + c]
        ids[i, p + c:end] = input_ids[pairs + i, p:p + r]
        positions[i, :p + c] = torch.arange(p + c, device=device)
        positions[i, p + c:end] = torch.arange(p, p + r, device=device)
        allowed[i, 0, :end, :end] = causal[:end, :end]
        allowed[i, 0, p + c:end, p:p + c] = False  # the rejected tokens do not see the chosen ones
        padding = torch.arange(end, size, device=device)
        allowed[i, 0, padding, padding] = True  # padding attends to itself only: no empty softmax row
    mask = allowed if dtype is None else \
        torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    return Packed(ids, positions, mask, shared, chosen, rejected)


def scored_tokens(input_ids, pad_token_id, packed: Packed) -> tuple[list[int], list[int]]:
    """(pair, packed position) where a sequence classifier reads each row's score, chosen rows
    first: the row's rightmost token that is not the pad token, as transformers' classifiers read
    it (a template whose turns end with the pad token is scored at the token before it)."""
    pairs = len(packed.shared)
    places = []
    for row in range(input_ids.shape[0]):
        i = row % pairs
        length = packed.shared[i] + (packed.chosen[i] if row < pairs else packed.rejected[i])
        kept = (input_ids[row] != pad_token_id).nonzero() if pad_token_id is not None else None
        t = int(kept[-1]) if kept is not None and len(kept) else length - 1
        if row >= pairs and t >= packed.shared[i]:  # a rejected row's tokens after the shared ones
            t += packed.chosen[i]
        places.append(t)
    return [row % pairs for row in range(input_ids.shape[0])], places


def _cache_argument(model) -> str:
    """The name the model's forward takes its key-value cache by (``cache`` from transformers 5.25,
    ``past_key_values`` before)."""
    import inspect

    inner = _unwrap(model)
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def prompt_frozen(model, prompt_gradients: bool) -> bool:
    """Whether this pass runs its prompts without gradients (``split_run``): in training, with
    ``prompt_gradients`` off, and without gradient checkpointing, which cannot replay a cache."""
    import torch

    inner = _unwrap(model)
    checkpointing = getattr(inner, "is_activation_checkpointing", None)  # transformers 5.x; the old name before
    checkpointing = getattr(inner, "is_gradient_checkpointing", False) if checkpointing is None else checkpointing
    return not prompt_gradients and torch.is_grad_enabled() and not checkpointing


def split_run(model, packed: Packed, split: list[int], **kwargs):
    """The model's output over each pair's packed tokens from ``split[i]`` on (a ``[pairs, T]``
    batch whose position ``t`` is the packed position ``split[i] + t``), the tokens before it run
    first without gradients and read from their cached keys and values. ``split[i]`` is at most
    the pair's shared tokens; gradients reach the weights through the tokens after it only."""
    import torch
    from transformers import DynamicCache

    allowed = packed.mask if packed.mask.dtype == torch.bool else packed.mask == 0
    ends = [p + c + r for p, c, r in zip(packed.shared, packed.chosen, packed.rejected)]
    pairs, before, after = len(ends), max(split), max(e - s for e, s in zip(ends, split))
    device, dtype = packed.input_ids.device, packed.input_ids.dtype
    ids = [torch.zeros(pairs, n, dtype=dtype, device=device) for n in (before, after)]
    positions = [torch.zeros(pairs, n, dtype=torch.long, device=device) for n in (before, after)]
    first = torch.zeros(pairs, 1, before, before, dtype=torch.bool, device=device)
    rest = torch.zeros(pairs, 1, after, before + after, dtype=torch.bool, device=device)
    for i, (s, e) in enumerate(zip(split, ends)):
        n = e - s
        ids[0][i, :s], positions[0][i, :s] = packed.input_ids[i, :s], packed.position_ids[i, :s]
        ids[1][i, :n], positions[1][i, :n] = packed.input_ids[i, s:e], packed.position_ids[i, s:e]
        first[i, 0, :s, :s] = allowed[i, 0, :s, :s]
        rest[i, 0, :n, :s] = allowed[i, 0, s:e, :s]  # the shared tokens; the first pass's padding is not seen
        rest[i, 0, :n, before:before + n] = allowed[i, 0, s:e, s:e]
        padding = torch.arange(s, before, device=device)
        first[i, 0, padding, padding] = True  # padding attends to itself only: no empty softmax row
        padding = torch.arange(n, after, device=device)
        rest[i, 0, padding, before + padding] = True
    if packed.mask.dtype != torch.bool:  # eager attention adds the mask to its scores
        first, rest = (torch.zeros(m.shape, dtype=packed.mask.dtype, device=device)
                       .masked_fill(~m, torch.finfo(packed.mask.dtype).min) for m in (first, rest))
    cache = {_cache_argument(model): DynamicCache()}
    with torch.no_grad():
        model(input_ids=ids[0], attention_mask=first, position_ids=positions[0], use_cache=True, **cache)
    return model(input_ids=ids[1], attention_mask=rest, position_ids=positions[1], use_cache=True, **cache, **kwargs)


def _mask_dtype(model):
    """None (a boolean mask) for SDPA; for eager attention the dtype of the model's floating weights."""
    import torch

    model = _unwrap(model)
    if model.config._attn_implementation == "sdpa":
        return None
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


@dataclass
class Window:
    """Each row of a pair batch cut to what its loss reads: from the token before its first
    completion token to its end (a causal LM's logits at a position predict the next token)."""
    starts: list[int]  # where each row's window starts in the row
    lengths: list[int]  # its length
    input_ids: Any  # [rows, W], right-padded
    completion_mask: Any  # [rows, W]


def completion_window(input_ids, attention_mask, completion_mask) -> Window:
    """The windows of a right-padded batch whose ``completion_mask`` marks each row's completion."""
    import torch

    lengths = attention_mask.sum(dim=1).tolist()
    starts, sizes = [], []
    for row, length in enumerate(lengths):
        marked = completion_mask[row, :length].nonzero()
        first = int(marked[0]) if len(marked) else length
        starts.append(max(0, min(first, length) - 1))
        sizes.append(length - starts[-1])
    width = max(sizes)
    ids = torch.zeros(len(lengths), width, dtype=input_ids.dtype, device=input_ids.device)
    completion = torch.zeros(len(lengths), width, dtype=completion_mask.dtype, device=completion_mask.device)
    for row, (start, size) in enumerate(zip(starts, sizes)):
        ids[row, :size] = input_ids[row, start:start + size]
        completion[row, :size] = completion_mask[row, start:start + size]
    return Window(starts, sizes, ids, completion)


class CompletionLogits:
    """Stands in for a causal LM in one loss computation over a pair batch: runs the batch packed
    (whatever it is then called with), computes logits only where the rows' windows need them
    (``logits_to_keep``: the vocabulary projection and its log-softmax over the prompts were most
    of a DPO step's backward pass), and returns them laid out as the windows (``Window``), which
    the trainer reads in place of the rows."""

    def __init__(self, model, packed: Packed, window: Window, prompt_gradients: bool = True):
        self._model, self._packed, self._window = model, packed, window
        self._prompt_gradients = prompt_gradients

    def __call__(self, **ignored):
        import torch
        from transformers.modeling_outputs import CausalLMOutput

        packed, window = self._packed, self._window
        pairs = len(packed.shared)
        places = []  # each row's window as positions of its pair's packed sequence
        for row, (start, size) in enumerate(zip(window.starts, window.lengths)):
            i = row % pairs
            t = torch.arange(start, start + size)
            if row >= pairs:  # a rejected row: its tokens after the shared ones follow the chosen ones
                t = torch.where(t < packed.shared[i], t, t + packed.chosen[i])
            places.append(t)
        first = [min(int(places[i][0]), int(places[pairs + i][0])) for i in range(pairs)]
        split = [min(s, f) for s, f in zip(packed.shared, first)]
        if prompt_frozen(self._model, self._prompt_gradients) and max(split):
            out = split_run(self._model, packed, split)  # every window lies after its pair's split
            device = out.logits.device
            rows = [out.logits[row % pairs, (place - split[row % pairs]).to(device)]
                    for row, place in enumerate(places)]
            return CausalLMOutput(logits=torch.nn.utils.rnn.pad_sequence(rows, batch_first=True))
        span = max(int(torch.max(places[i].max(), places[pairs + i].max())) - first[i] + 1 for i in range(pairs))
        last = packed.input_ids.shape[1] - 1
        keep = torch.stack([torch.clamp(torch.arange(first[i], first[i] + span), max=last) for i in range(pairs)])
        out = self._model(input_ids=packed.input_ids, attention_mask=packed.mask, position_ids=packed.position_ids,
                          use_cache=False, logits_to_keep=keep.to(packed.input_ids.device))
        device = out.logits.device
        rows = [out.logits[row % pairs, (place - first[row % pairs]).to(device)] for row, place in enumerate(places)]
        return CausalLMOutput(logits=torch.nn.utils.rnn.pad_sequence(rows, batch_first=True))

    def __getattr__(self, name):
        return getattr(self._model, name)


def windowed(model, inputs, prompt_gradients: bool = True) -> tuple[Any, dict] | None:
    """(stand-in model, inputs cut to their windows) for a DPO loss or reference pass over a pair
    batch, or None where the batch runs as it is (a model that cannot run packed, a batch not laid
    out as pairs). The attention mask stays whole: the trainer only counts tokens with it.
    ``prompt_gradients`` off: a training pass runs the prompts without gradients (``split_run``)."""
    packed = pack(inputs["input_ids"], inputs.get("attention_mask"), _mask_dtype(model)) if supported(model) else None
    if packed is None:
        return None
    window = completion_window(inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"])
    cut = {**inputs, "input_ids": window.input_ids, "completion_mask": window.completion_mask}
    return CompletionLogits(model, packed, window, prompt_gradients), cut


class ClassifierPairs:
    """Stands in for a one-logit sequence classifier (a reward model) in one loss computation:
    runs a pair batch packed, reads each row's score at its last token (from the head's output at
    every position), and returns them as the trainer laid the rows out. ``prompt_gradients`` off:
    a training pass runs the prompts without gradients (``split_run``)."""

    def __init__(self, model, prompt_gradients: bool = True):
        self._model, self._prompt_gradients = model, prompt_gradients

    def _head(self):
        inner = _unwrap(self._model)
        inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
        return inner.score

    def __call__(self, input_ids=None, attention_mask=None, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        packed = pack(input_ids, attention_mask, _mask_dtype(self._model))
        if packed is None or set(kwargs) - {"use_cache"}:
            return self._model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        pad = _unwrap(self._model).config.pad_token_id
        rows, positions = scored_tokens(input_ids, pad, packed)
        split = [min([shared] + [t for row, t in zip(rows, positions) if row == i])  # every scored token after it
                 for i, shared in enumerate(packed.shared)]
        frozen = prompt_frozen(self._model, self._prompt_gradients) and max(split) > 0
        seen = []
        hook = self._head().register_forward_hook(lambda module, args, output: seen.append(output))
        try:
            if frozen:
                split_run(self._model, packed, split)
                positions = [t - split[row] for row, t in zip(rows, positions)]
            else:
                self._model(input_ids=packed.input_ids, attention_mask=packed.mask, position_ids=packed.position_ids,
                            use_cache=False)
        finally:
            hook.remove()
        return SequenceClassifierOutput(logits=seen[-1][rows, positions].float())

    def __getattr__(self, name):
        return getattr(self._model, name)


def reward_trainer(packed: bool = True, prompt_gradients: bool = True):
    """TRL's ``RewardTrainer``, its pairs run packed where the model supports it (``packed``:
    the method's ``share_prompt``; False gives TRL's own class), their prompts without gradients
    in training when ``prompt_gradients`` is off."""
    from trl import RewardTrainer

    if not packed:
        return RewardTrainer

    class SharedPromptRewardTrainer(RewardTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            stand_in = ClassifierPairs(model, prompt_gradients) if supported(model) else model
            return super().compute_loss(stand_in, inputs, return_outputs, num_items_in_batch)

    return SharedPromptRewardTrainer


def dpo_trainer(packed: bool = True, prompt_gradients: bool = True):
    """TRL's ``DPOTrainer``, its pairs run packed and their logits computed over the completions
    only, where the model supports it: in training, in held-out evaluations and in the reference's
    pass before training (``precompute_ref_log_probs``, which the loss needs to run packed), their
    prompts without gradients in training when ``prompt_gradients`` is off. ``packed`` False
    gives TRL's own class."""
    from trl import DPOTrainer

    if not packed:
        return DPOTrainer

    class SharedPromptDPOTrainer(DPOTrainer):
        def _compute_loss(self, model, inputs, return_outputs):
            cut = windowed(model, inputs, prompt_gradients) if self.precompute_ref_logps and not self.aux_loss_enabled \
                else None
            return super()._compute_loss(*(cut or (model, inputs)), return_outputs)

        def compute_ref_log_probs(self, model, inputs):
            return super().compute_ref_log_probs(*(windowed(model, inputs) or (model, inputs)))

    return SharedPromptDPOTrainer
