"""The arena: each new model put to the vote against its parent, so people judge it as well as
the reward model.

``arena_pairs`` makes pairs of the model (greedy) against its parent (greedy) on held-out prompts
— the preference pairs held out from training, else the SFT test rows — in the ``arena`` pair
set; a ``pairs.generate`` job answers them and annotators vote blind as on any pair. The votes
carry both models' names, so the scoreboard's Bradley–Terry column (the evaluation's ``votes``
set) rates them. ``data/arena.json`` holds the workspace's choice: with ``auto`` on, every
successful training of a model that answers queues its arena by itself (``follow_ups``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from storage import Workspace
from storage.atomic import Unreadable, read_json, write_json_atomic
from workbench.errors import WorkbenchError
from workbench.evaluate import sets as eval_sets
from workbench.feedback.pairs import Side, make_pair, pair_store
from workbench.feedback.sets import read_sets
from workbench.models.loading import BASE
from workbench.settings import Settings

ARENA_SET = "arena"


@dataclass
class ArenaSettings:
    auto: bool = False  # queue the arena of every model a training run produces
    prompts: int = 20  # held-out prompts per new model
    max_new_tokens: int = 256

    def validate(self) -> None:
        if not isinstance(self.auto, bool):
            raise WorkbenchError("auto is true or false")
        for name, low, high in (("prompts", 1, 1000), ("max_new_tokens", 16, 4096)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise WorkbenchError(f"arena {name} must be a whole number from {low} to {high}, got {value!r}")


def arena_file(workspace: Workspace):
    return workspace.data / "arena.json"


def read_arena(workspace: Workspace) -> ArenaSettings:
    stored = read_json(arena_file(workspace), default={})
    if isinstance(stored, Unreadable) or not isinstance(stored, dict):
        return ArenaSettings()
    known = {f.name for f in fields(ArenaSettings)}
    return ArenaSettings(**{k: v for k, v in stored.items() if k in known})


def save_arena(workspace: Workspace, **changes: Any) -> ArenaSettings:
    updated = ArenaSettings(**{**asdict(read_arena(workspace)), **{k: v for k, v in changes.items() if v is not None}})
    updated.validate()
    workspace.data.mkdir(parents=True, exist_ok=True)
    write_json_atomic(arena_file(workspace), asdict(updated))
    return updated


def held_out_prompts(workspace: Workspace, limit: int) -> list[str]:
    """Prompts no training run learnt from: the held-out preference pairs, else the SFT test rows."""
    prompts: list[str] = []
    try:
        path, held_out = eval_sets.preference_source(workspace)
        prompts = [p["prompt"] for p in eval_sets.preference_pairs(path, held_out)]
    except eval_sets.EmptySet:
        pass
    if not prompts:
        try:
            prompts = [r["messages"][-1]["content"] for r in eval_sets.test_rows(workspace)
                       if r["messages"][-1]["role"] == "user"]
        except eval_sets.EmptySet:
            raise WorkbenchError("no held-out prompts to put the models to the vote on: merge votes into "
                                 "data/dataset_rlhf.jsonl or add SFT rows to data/test.jsonl") from None
    return list(dict.fromkeys(prompts))[:limit]


def parent_model(settings: Settings, name: str) -> str:
    from workbench.evaluate.plan import parent_of

    return parent_of(settings, name) or BASE


def model_version(settings: Settings, name: str) -> str:
    """What tells a model apart from an earlier one of the same name: its manifest's run and date."""
    from storage import read_manifest

    manifest = read_manifest(settings.workspace.model_dir(name)) if name != BASE else None
    return f"{manifest.get('run_id', '')}@{manifest.get('created', '')}" if isinstance(manifest, dict) else ""


def default_sides(settings: Settings) -> tuple[str, str, str]:
    """The models new pairs compare unless a trainer picks others: the newest trained model that
    answers against its parent; the base against itself (two temperatures) with a note saying why
    that is a weak comparison when there is nothing else."""
    from workbench.models.registry import writes_answers
    from workbench.train.preflight import newest_trained

    newest = newest_trained(settings.workspace, writes_answers)
    if newest:
        return newest, parent_model(settings, newest), ""
    return BASE, BASE, ("One model at two temperatures is a weak comparison: its answers often tie, and votes "
                        "between one model's samples cannot rate models on the scoreboard. Train a model to "
                        "compare it with its parent.")


def arena_pairs(settings: Settings, model: str, against: str | None = None,
                arena: ArenaSettings | None = None) -> dict[str, Any]:
    """Pairs of ``model`` against ``against`` (its parent by default) in the arena set, new for each
    version of the two models (a model trained again under its name gets new answers); the result
    of ``added`` plus both names. The caller queues their generation."""
    from workbench.feedback.annotation import added, check_models, prepare_set

    arena = arena or read_arena(settings.workspace)
    against = against or parent_model(settings, model)
    if against == model:
        raise WorkbenchError(f"{model!r} against itself teaches nothing: name another model")
    a, b = Side(model, 0.0, arena.max_new_tokens), Side(against, 0.0, arena.max_new_tokens)
    check_models(settings, a, b)
    prompts = held_out_prompts(settings.workspace, arena.prompts)
    set_name = prepare_set(settings, ARENA_SET, None)
    variant = f"{model_version(settings, model)}|{model_version(settings, against)}"
    pairs = [make_pair(prompt, "arena", a, b, set_name=set_name, variant=variant) for prompt in prompts]
    return {**added(pair_store(settings.workspace), pairs), "model": model, "against": against}


def follow_ups(settings: Settings, kind: str, config: dict[str, Any]) -> list[tuple[str | None, dict[str, Any], str]]:
    """What a successful run sets going: ``(job kind, its config, why)``, or ``(None, {}, why)``
    for what could not be prepared. A new reward model re-scores the sets ordered
    ``informative`` that have open pairs; with the arena on, a new answering model gets its arena
    pairs (created here, generated by the job)."""
    from workbench.evaluate.units import REWARD, model_role
    from workbench.feedback.informative import open_pairs

    name = str(config.get("output_name") or "")
    if not kind.startswith("train.") or not name or not settings.workspace.model_dir(name).is_dir():
        return []
    if model_role(settings, name) == REWARD:
        return [("pairs.score", {"set_name": s.name, "reward_model": name},
                 f"{name} orders set {s.name!r} by what it is least sure of")
                for s in read_sets(settings.workspace).values()
                if s.order == "informative" and open_pairs(settings.workspace, s.name)]
    arena = read_arena(settings.workspace)
    if not arena.auto:
        return []
    try:
        made = arena_pairs(settings, name, arena=arena)
    except WorkbenchError as exc:
        return [(None, {}, f"no arena for {name}: {exc}")]
    if not made["pair_ids"]:
        return []
    return [("pairs.generate", {"pair_ids": made["pair_ids"]},
             f"the arena: {name} against {made['against']} on {len(made['pair_ids'])} held-out prompts")]
