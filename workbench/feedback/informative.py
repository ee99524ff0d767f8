"""The most informative pair next: where the newest reward model is least sure.

A ``pairs.score`` job scores both answers of each open pair of a set with a reward model and
keeps the margin (``data/pair_scores.jsonl``, the last line of a pair wins). For a set whose
``order`` is ``informative``, the pairs whose two answers score closest come first: a vote there
settles what the reward model cannot yet tell apart, where a vote on a pair it already ranks
with a wide margin mostly confirms it. Pairs not scored yet follow in the order they were made.
``benchmarks/informative.py`` measures what this buys with a simulated annotator.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import Workspace, append_jsonl
from storage.jsonl import iter_jsonl
from storage.runs import now_iso
from workbench.configs import AUTO, option
from workbench.errors import WorkbenchError
from workbench.feedback.pairs import Pair, pair_store
from workbench.feedback.sets import DEFAULT_SET, read_sets
from workbench.feedback.tally import vote_rows, voters_by_pair
from workbench.job_context import JobContext
from workbench.kinds import Preflight
from workbench.safe_text import counted
from workbench.settings import Settings


@dataclass
class Config:
    set_name: str = option(DEFAULT_SET, "the pair set whose open pairs are scored", "pairs")
    reward_model: str = option(AUTO, "the reward model that scores them (auto: the newest)", "pairs")
    batch_size: int = option(8, "answers per forward pass", "pairs")

    def validate(self) -> None:
        if not 1 <= self.batch_size <= 256:
            raise ValueError("batch_size must be between 1 and 256")


def scores_file(workspace: Workspace) -> Path:
    return workspace.data / "pair_scores.jsonl"


def read_margins(workspace: Workspace) -> dict[str, float]:
    """pair id -> |score(a) - score(b)| from the latest scoring of each pair."""
    margins: dict[str, float] = {}
    for record in iter_jsonl(scores_file(workspace), strict=False):
        if isinstance(record.get("pair_id"), str) and isinstance(record.get("margin"), (int, float)):
            margins[record["pair_id"]] = abs(float(record["margin"]))
    return margins


def open_pairs(workspace: Workspace, set_name: str) -> list[Pair]:
    """The set's answered pairs that still want votes."""
    sets = read_sets(workspace)
    if set_name not in sets:
        raise WorkbenchError(f"no pair set {set_name!r}: see `workbench pairs sets`")
    wanted = sets[set_name].votes_per_pair
    voters = voters_by_pair(vote_rows(workspace.feedback_file))
    return [p for p in pair_store(workspace).all().values()
            if p.set_name == set_name and p.ready and len(voters.get(p.pair_id, {})) < wanted]


def scoring_model(settings: Settings, name: str) -> str:
    from workbench.evaluate.plan import reward_models

    if name != AUTO:
        from workbench.evaluate.units import REWARD, model_role
        from workbench.models.loading import resolve

        resolve(name, settings.workspace, settings.base_model)
        if model_role(settings, name) != REWARD:
            raise WorkbenchError(f"{name!r} is not a reward model: pick one trained with `workbench train reward`")
        return name
    found = reward_models(settings)
    if not found:
        raise WorkbenchError("no reward model yet: train one (`workbench train reward`) to order pairs by what "
                             "it is least sure of")
    return found[0]


def preflight(config: Config, settings: Settings) -> Preflight:
    model = scoring_model(settings, config.reward_model)
    todo = open_pairs(settings.workspace, config.set_name)
    if not todo:
        raise WorkbenchError(f"set {config.set_name!r} has no answered pair that still wants votes")
    return Preflight({}, [], {"reward_model": model, "pairs": len(todo)})


def run(config: Config, context: JobContext) -> dict[str, Any]:
    from workbench.evaluate.units import load
    from workbench.models.loading import release_memory
    from workbench.train.scoring import reward_scores

    reporter = context.reporter
    settings = context.settings
    model_name = scoring_model(settings, config.reward_model)
    todo = open_pairs(settings.workspace, config.set_name)
    reporter.log(f"scoring {len(todo)} open pairs of set {config.set_name!r} with {model_name}")
    loaded = load(settings, model_name)
    scored = 0
    for start in range(0, len(todo), config.batch_size):
        reporter.check_cancel()
        batch = todo[start:start + config.batch_size]
        prompts = [p.prompt for p in batch]
        a = reward_scores(loaded.model, loaded.tokenizer, prompts, [p.a.answer for p in batch], config.batch_size,
                          system=loaded.system)
        b = reward_scores(loaded.model, loaded.tokenizer, prompts, [p.b.answer for p in batch], config.batch_size,
                          system=loaded.system)
        append_jsonl(scores_file(settings.workspace), [
            {"pair_id": p.pair_id, "model": model_name, "margin": round(x - y, 6), "scored": now_iso()}
            for p, x, y in zip(batch, a, b)])
        scored += len(batch)
        reporter.progress(scored, len(todo), f"{scored}/{counted(len(todo), 'pair')} scored")
    del loaded
    release_memory()
    return {"scored": scored, "reward_model": model_name, "set": config.set_name}
