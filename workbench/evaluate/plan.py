"""What an evaluation will do, decided and checked before it is queued: its Config (the form,
the flags and the validation), the models and their roles, the sets that have rows, the judge of
the win-rates and the models each policy is compared with, and the units of work."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import list_models, read_manifest
from workbench.configs import option
from workbench.errors import WorkbenchError
from workbench.evaluate import sets as sets_of
from workbench.evaluate import units
from workbench.evaluate.sets import SETS, EmptySet
from workbench.models.loading import BASE, ModelNotFound, resolve
from workbench.settings import Settings

ANSWER_SETS = ("test", "rag", "preferences")  # the sets a policy writes answers for


@dataclass
class Config:
    models: list[str] = option(["base"], "models to evaluate: base, adapters, merged models, reward models", "models")
    sets: list[str] = option([], "sets to evaluate on (empty = every set that has data)", "sets", SETS)
    judge: str = option("", "reward model that judges the win-rates ('' = the newest reward model)", "sets")
    rag_set: str = option(sets_of.RAG_SET, "RAG questions under data/ (JSONL or TSV: question, sources, reference)", "sets")
    retrieval_k: int = option(5, "chunks retrieved per RAG question", "sets")
    max_prompts: int = option(50, "rows taken from each set (0 = all)", "generation")
    max_new_tokens: int = option(64, "tokens generated per answer", "generation")
    temperature: float = option(0.0, "sampling temperature, the same for every model (0 = greedy)", "generation")
    repetition_penalty: float | None = option(None, "0 or empty = each model's default (its own, else 1.1); 1 = none", "generation")
    stop_loops: bool = option(True, "stop an answer whose tail repeats itself and cut it back", "generation")
    batch_size: int = option(8, "prompts per forward pass", "generation")
    seed: int = option(0, "seed set before each model generates", "generation")
    samples: int = option(10, "answers per set shown side by side in the report", "report")

    def validate(self) -> None:
        problems = []
        if not [m for m in self.models if m.strip()]:
            problems.append("name at least one model")
        if self.max_prompts < 0 or self.samples < 0:
            problems.append("max_prompts and samples cannot be negative")
        if not 1 <= self.max_new_tokens <= 4096:
            problems.append("max_new_tokens must be between 1 and 4096")
        if self.batch_size < 1 or self.retrieval_k < 1:
            problems.append("batch_size and retrieval_k must be at least 1")
        if not 0 <= self.temperature <= 2:
            problems.append("temperature must be between 0 and 2")
        if self.repetition_penalty and not 1 <= self.repetition_penalty <= 2:
            problems.append("repetition_penalty must be between 1 and 2 (0 or empty: each model's default)")
        if problems:
            raise ValueError("; ".join(problems))


# the units ----------------------------------------------------------------------------------
MODEL, RETRIEVAL, VOTES, JUDGE, PROMPTS = "model", "retrieval", "votes", "judge", "prompts"


@dataclass(frozen=True)
class Unit:
    """One piece of an evaluation, its result one file in ``runs/<id>/results/``: a model on a
    set, or a measure of a whole set: the retrieval of the RAG questions, the ratings from the
    votes, the judge's scores of every policy's answers (and the prompts a report shows)."""
    kind: str
    set: str
    model: str = ""  # a MODEL unit's model

    def path(self, results: Path) -> Path:
        """``<model>.<set>.json``; ``_<kind>.<set>.json`` for a set-wide unit."""
        return results / f"{self.model or '_' + self.kind}.{self.set}.json"

    def label(self) -> str:
        return f"{self.model or self.kind} on {self.set}"


def model_unit(model: str, name_set: str) -> Unit:
    return Unit(MODEL, name_set, model)


# the plan -----------------------------------------------------------------------------------
@dataclass
class Plan:
    models: list[str]
    roles: dict[str, str]
    sets: list[str]
    judge: str | None
    references: dict[str, list[str]]  # policy -> the models its win-rate is measured against
    inputs: dict[str, Path]
    summary: dict[str, Any]

    def generators(self) -> list[str]:
        """Every policy that writes answers: the chosen ones, then the win-rate references."""
        chosen = [m for m in self.models if self.roles[m] == units.POLICY]
        extra = [r for refs in self.references.values() for r in refs if r not in chosen]
        return chosen + list(dict.fromkeys(extra))

    def units(self) -> list[Unit]:
        """Set-wide measures first, then each model's sets (a model loads once for all of them),
        the judge last: it scores the answers the policies wrote."""
        todo = [Unit(RETRIEVAL, "rag")] if "rag" in self.sets else []
        todo += [Unit(VOTES, "votes")] if "votes" in self.sets else []
        chosen = set(self.models)
        for name in self.generators():
            for name_set in ANSWER_SETS:
                if name_set in self.sets and (name in chosen or name_set == "preferences"):
                    todo.append(model_unit(name, name_set))
        if "preferences" in self.sets:
            todo += [model_unit(m, "preferences") for m in self.models if self.roles[m] == units.REWARD]
            if self.judge and self.references:
                todo.append(Unit(JUDGE, "preferences"))
        return todo


def reward_models(settings: Settings) -> list[str]:
    """Reward models of the workspace, newest first."""
    found = []
    for entry in list_models(settings.workspace.models):
        manifest = entry.get("manifest")
        if isinstance(manifest, dict) and entry["name"] != BASE and units.model_role(settings, entry["name"]) == units.REWARD:
            found.append((str(manifest.get("created") or ""), entry["name"]))
    return [name for _, name in sorted(found, reverse=True)]


def parent_of(settings: Settings, name: str) -> str | None:
    if name == BASE:
        return None
    manifest = read_manifest(settings.workspace.model_dir(name))
    return manifest.get("parent") if isinstance(manifest, dict) else None


def plan(config: Config, settings: Settings) -> Plan:
    """Every check before anything is queued: models, sets with rows, the judge, the corpus."""
    ws = settings.workspace
    models = list(dict.fromkeys(m.strip() for m in config.models if m.strip()))
    for name in models:
        try:
            resolve(name, ws, settings.base_model)
        except ModelNotFound as exc:
            raise WorkbenchError(f"model {name!r}: {exc}") from None
    roles = {m: units.model_role(settings, m) for m in models}
    chosen_sets = [s for s in SETS if s in config.sets] or list(SETS)
    inputs: dict[str, Path] = {}
    summary: dict[str, Any] = {}
    skipped = []
    for name_set in chosen_sets:
        try:
            summary[name_set] = _check_set(name_set, config, settings, inputs)
        except EmptySet as exc:
            if config.sets:
                raise WorkbenchError(f"set {name_set!r}: {exc}") from None
            skipped.append(f"{name_set} ({exc})")
    found_sets = [s for s in chosen_sets if s in summary]
    if not found_sets:
        raise WorkbenchError("no set has data to evaluate on: " + "; ".join(skipped))
    judge, references = None, {}
    policies = [m for m in models if roles[m] == units.POLICY]
    if "preferences" in found_sets and policies:
        judge = config.judge.strip() or next(iter(reward_models(settings)), None)
        if judge is None:
            raise WorkbenchError("win-rates on the preferences set need a reward model to judge them: train one "
                                 "(`workbench train reward`) or leave the preferences set out")
        if units.model_role(settings, judge) != units.REWARD:
            raise WorkbenchError(f"judge {judge!r} is not a reward model (a sequence-classification model)")
        for name in policies:
            refs = [r for r in (BASE, parent_of(settings, name)) if r and r != name]
            if refs:
                references[name] = list(dict.fromkeys(refs))
        for ref in {r for refs in references.values() for r in refs}:
            try:
                resolve(ref, ws, settings.base_model)
            except ModelNotFound as exc:
                raise WorkbenchError(f"win-rate reference {ref!r}: {exc}") from None
    summary["skipped_sets"] = skipped
    return Plan(models, roles, found_sets, judge, references, inputs, summary)


def _check_set(name: str, config: Config, settings: Settings, inputs: dict[str, Path]) -> dict[str, Any]:
    ws = settings.workspace
    if name == "test":
        rows = sets_of.test_rows(ws)
        inputs["test"] = ws.test_file
        return {"rows": min(len(rows), config.max_prompts or len(rows))}
    if name == "preferences":
        path, held_out = sets_of.preference_source(ws)
        pairs = sets_of.preference_pairs(path, held_out)
        inputs["preferences"] = path
        return {"rows": min(len(pairs), config.max_prompts or len(pairs)), "held_out": held_out, "file": path.name}
    if name == "rag":
        from workbench.train.data import data_file

        try:
            path = data_file(ws, config.rag_set)
        except WorkbenchError as exc:
            raise EmptySet(str(exc)) from None
        questions = sets_of.rag_questions(path)
        sets_of.resolve_sources(ws, questions)
        if not (ws.corpus_db.is_file() or ws.metadata_file.is_file()):
            raise WorkbenchError("the rag set needs the corpus index: upload and index documents in Corpus")
        inputs["rag"] = path
        return {"rows": min(len(questions), config.max_prompts or len(questions)), "file": path.name}
    comparisons = sets_of.vote_comparisons(ws)
    inputs["votes"] = ws.feedback_file
    return {"rows": len(comparisons)}
