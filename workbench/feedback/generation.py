"""The pair-generation job: both answers of every new A/B pair, generated in batches before an
annotator opens it. Sides are grouped by model and settings, each group's prompts go through the
model several at a time (left-padded), and each batch's answers are saved as soon as they exist,
so a cancelled or lost job resumes where it stopped and a pair is never generated twice."""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Any

from workbench.chat.prompt import fit_prompt
from workbench.chat.system_prompt import launched_with, system_input
from workbench.configs import option
from workbench.errors import WorkbenchError
from workbench.feedback.display import LIMIT_NOTE
from workbench.feedback.pairs import Pair, PairStore, pair_store
from workbench.job_context import JobContext
from workbench.kinds import Preflight
from workbench.models.loading import ModelNotFound, resolve
from workbench.safe_text import counted
from workbench.settings import Settings

SIDES = ("a", "b")


@dataclass
class Config:
    pair_ids: list[str] = option([], "pairs to answer (empty = every pair still missing an answer)", "pairs")
    batch_size: int = option(8, "prompts per forward pass", "generation")

    def validate(self) -> None:
        if not 1 <= self.batch_size <= 256:
            raise ValueError("batch_size must be between 1 and 256")


def pending(store: PairStore, pair_ids: list[str]) -> list[tuple[Pair, str]]:
    """(pair, side) of every side still without an answer, among ``pair_ids`` (or all pairs)."""
    pairs = store.all()
    chosen = [pairs[i] for i in dict.fromkeys(pair_ids) if i in pairs] if pair_ids else list(pairs.values())
    return [(p, s) for p in chosen for s in SIDES if not getattr(p, s).answer]


def groups(todo: list[tuple[Pair, str]]) -> dict[tuple, list[tuple[Pair, str]]]:
    """Sides that share a model and settings, so they can share batches."""
    out: dict[tuple, list[tuple[Pair, str]]] = {}
    for pair, side_name in todo:
        side = getattr(pair, side_name)
        key = (side.model, side.temperature, side.max_new_tokens, side.repetition_penalty, side.stop_loops)
        out.setdefault(key, []).append((pair, side_name))
    return out


def check_models(settings: Settings, todo: list[tuple[Pair, str]]) -> None:
    for model in sorted({getattr(p, s).model for p, s in todo}):
        try:
            resolve(model, settings.workspace, settings.base_model)
        except ModelNotFound as exc:
            raise WorkbenchError(f"pair model {model!r}: {exc}") from None


def preflight(config: Config, settings: Settings) -> Preflight:
    todo = pending(pair_store(settings.workspace), config.pair_ids)
    check_models(settings, todo)
    return Preflight(system_input(settings.workspace), [],
                     {"sides": len(todo), "pairs": len({p.pair_id for p, _ in todo})})


def run(config: Config, context: JobContext) -> dict[str, Any]:
    from workbench.models.generation import context_window, generate_batch
    from workbench.models.loading import load_for_inference, release_memory

    reporter = context.reporter
    settings = context.settings
    store = pair_store(settings.workspace)
    todo = pending(store, config.pair_ids)
    check_models(settings, todo)  # an unknown model fails the job before anything loads
    total, done, generated, tokens, seconds = len(todo), 0, 0, 0, 0.0
    reporter.log(f"{counted(total, 'answer')} to generate for {counted(len({p.pair_id for p, _ in todo}), 'pair')}")
    system = launched_with(context.run.folder)
    if system.text:
        reporter.log(f"under the workspace's system prompt, version {system.version}")
    for key, items in groups(todo).items():
        model_name = key[0]
        answered = {(p.pair_id, s) for p, s in pending(store, [p.pair_id for p, _ in items])}
        items = [(p, s) for p, s in items if (p.pair_id, s) in answered]  # answered meanwhile: skip
        if not items:
            continue
        reporter.check_cancel()
        reporter.progress(done, total, f"loading {model_name}")
        model, tokenizer, _ = load_for_inference(resolve(model_name, settings.workspace, settings.base_model),
                                                 workspace=settings.workspace)
        sampling = getattr(items[0][0], items[0][1]).sampling()
        window = context_window(model)
        fitted = [fit_prompt(tokenizer, p.prompt, window - sampling.max_new_tokens, system=system.text)
                  for p, _ in items]
        offset = done
        reporter.progress(done, total, f"{model_name}: generating 0/{len(items)}")

        def save(count: int, answers: list[str], items=items, fitted=fitted, offset=offset, model_name=model_name,
                 tokenizer=tokenizer, limit=sampling.max_new_tokens):
            nonlocal generated, tokens
            lengths = [len(ids) for ids in tokenizer(answers, add_special_tokens=False)["input_ids"]]
            tokens += sum(lengths)
            start = count - len(answers)
            # decoded again, an answer cut by the limit counts its tokens give or take one
            notes = ["; ".join(filter(None, [fitted[start + i][1], LIMIT_NOTE.format(limit) if n >= limit - 1 else ""]))
                     for i, n in enumerate(lengths)]
            generated += store.save_answers([(p.pair_id, s, answer, notes[i])
                                             for i, ((p, s), answer) in enumerate(zip(items[start:count], answers))])
            reporter.progress(offset + count, total, f"{model_name}: generating {count}/{len(items)}")
            reporter.check_cancel()  # after saving: a cancel keeps every finished batch

        began = time.perf_counter()
        # A seed of each group's own: sides that differ only in temperature must not draw the
        # same random numbers (on a small model they would then often give the same answer).
        generate_batch(model, tokenizer, [f[0] for f in fitted], sampling, config.batch_size,
                       seed=zlib.crc32(repr(key).encode()), on_batch=save, system=system.text)
        seconds += time.perf_counter() - began
        done += len(items)
        reporter.log(f"{model_name}: {counted(len(items), 'answer')}")
        del model
        release_memory()
    reporter.progress(total, total, f"{counted(generated, 'answer')} generated")
    return {"generated": generated, "sides": total, "new_tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1) if seconds else None}
