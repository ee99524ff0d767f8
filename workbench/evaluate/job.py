"""The evaluation job: the chosen models on the chosen sets with the same seed and sampling for
every model. The work is cut into units (one model on one set); each unit's result is a file in
``runs/<id>/results/`` written as soon as it is done, so a cancelled or killed evaluation resumes
without recomputing them, and ``report.json`` is rewritten after every unit (live partial results).
A model that fails to load fails its own row only."""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import list_models, read_json, read_manifest, write_json_atomic
from workbench.configs import option
from workbench.errors import WorkbenchError
from workbench.evaluate import sets as sets_of
from workbench.evaluate import units
from workbench.evaluate.sets import SETS, EmptySet
from workbench.models.loading import BASE, ModelNotFound, release_memory, resolve
from workbench.reporting import Cancelled
from workbench.settings import Settings
from workbench.train.preflight import Preflight

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

    def units(self) -> list[tuple[str, str]]:
        todo = [("_retrieval", "rag")] if "rag" in self.sets else []
        todo += [("_votes", "votes")] if "votes" in self.sets else []
        chosen = set(self.models)
        for name in self.generators():
            for name_set in ANSWER_SETS:
                if name_set in self.sets and (name in chosen or name_set == "preferences"):
                    todo.append((name, name_set))
        if "preferences" in self.sets:
            todo += [(m, "preferences") for m in self.models if self.roles[m] == units.REWARD]
            if self.judge and self.references:
                todo.append(("_judge", "preferences"))
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
        if not ws.index_file.is_file():
            raise WorkbenchError("the rag set needs the corpus index: upload and index documents in Corpus")
        inputs["rag"] = path
        return {"rows": min(len(questions), config.max_prompts or len(questions)), "file": path.name}
    comparisons = sets_of.vote_comparisons(ws)
    inputs["votes"] = ws.feedback_file
    return {"rows": len(comparisons)}


def preflight(config: Config, settings: Settings) -> Preflight:
    p = plan(config, settings)
    warnings = [f"set skipped: {s}" for s in p.summary.get("skipped_sets", [])]
    return Preflight(p.inputs, warnings, {"sets": p.sets, "judge": p.judge, "references": p.references,
                                          "units": len(p.units()), **{k: v for k, v in p.summary.items()
                                                                      if k != "skipped_sets"}})


# the job ------------------------------------------------------------------------------------
def run(config: Config, reporter) -> dict[str, Any]:
    from workbench.evaluate.report import write_report

    settings = dataclasses.replace(Settings.from_env(), home=reporter.workspace.home)
    run_record = reporter.run
    status = run_record.status()
    summary = status.get("preflight") or {}
    if summary.get("sets"):  # the sets found when it was queued, not a new guess
        config = dataclasses.replace(config, sets=list(summary["sets"]))
    p = plan(config, settings)
    inputs = {role: run_record.inputs / f"{role}.jsonl" for role in p.inputs}
    results = run_record.folder / "results"
    results.mkdir(exist_ok=True)
    for stale in results.glob("*.error.json"):  # a new attempt tries failed models again
        stale.unlink()
    data = EvalData(settings, config, inputs, summary)
    todo = p.units()
    for name_set in ANSWER_SETS:
        if name_set in p.sets and not _result_path(results, "_prompts", name_set).exists():
            write_json_atomic(_result_path(results, "_prompts", name_set), data.shown(name_set))
    done = sum(_result_path(results, m, s).exists() for m, s in todo)
    if done:
        reporter.log(f"resuming: {done} of {len(todo)} units already done, kept")
    reporter.log(f"evaluating {', '.join(p.models)} on {', '.join(p.sets)}"
                 + (f"; win-rates judged by {p.judge}" if p.judge else ""))
    started = time.perf_counter()
    by_model: dict[str, list[str]] = {}
    for name, name_set in todo:
        by_model.setdefault(name, []).append(name_set)
    index = 0
    for name, name_sets in by_model.items():
        pending = [s for s in name_sets if not _result_path(results, name, s).exists()]
        if not pending:
            index += len(name_sets)
            continue
        reporter.check_cancel()
        if name.startswith("_"):
            for name_set in pending:
                reporter.progress(index, len(todo), f"{name[1:]} on {name_set}")
                _save(results, name, name_set, data.special(name, name_set, p, results))
                index += 1
                _checkpoint(reporter, results)
                write_report(run_record.folder, config, p, settings)
            continue
        reporter.progress(index, len(todo), f"loading {name}")
        try:
            loaded = units.load(settings, name)
        except Exception as exc:  # this model's row fails; the others are scored
            reporter.log(f"{name}: failed to load: {type(exc).__name__}: {exc}")
            write_json_atomic(results / f"{name}.error.json", {"model": name, "error": f"{type(exc).__name__}: {exc}"})
            index += len(name_sets)
            continue
        for name_set in name_sets:
            if _result_path(results, name, name_set).exists():
                index += 1
                continue
            reporter.check_cancel()
            base_index = index

            def progress(done: int, total: int = data.size(name_set), at=base_index, what=f"{name} on {name_set}"):
                reporter.check_cancel()
                reporter.progress(at + done / max(total, 1), len(todo), what)

            progress(0)
            began = time.perf_counter()
            try:
                result = data.unit(loaded, name_set, progress)
            except Cancelled:
                raise
            except Exception as exc:  # this model's row fails; the others are scored
                reporter.log(f"{name} on {name_set}: failed: {type(exc).__name__}: {exc}")
                write_json_atomic(results / f"{name}.error.json",
                                  {"model": name, "error": f"{name_set}: {type(exc).__name__}: {exc}"})
                index += len(name_sets) - name_sets.index(name_set)
                break
            result["seconds"] = round(time.perf_counter() - began, 2)
            _save(results, name, name_set, result)
            found = [f"{k} {v:.4g}" for k, v in result.get("metrics", {}).items() if isinstance(v, (int, float))]
            reporter.log(f"{name} on {name_set}: " + (", ".join(found) or f"{len(result.get('answers', []))} answers")
                         + f" ({result['seconds']:.1f} s)" + (f"; {result['note']}" if result.get("note") else ""))
            index += 1
            _checkpoint(reporter, results)
            write_report(run_record.folder, config, p, settings)
        del loaded
        release_memory()
    reporter.progress(len(todo), len(todo), "writing the report")
    report = write_report(run_record.folder, config, p, settings, html=True)
    reporter.log(f"report: {run_record.folder / 'report.html'} ({time.perf_counter() - started:.1f} s)")
    failed = [m for m, row in report["models"].items() if row.get("error")]
    if failed and len(failed) == len(p.models):
        raise WorkbenchError("every model failed: " + "; ".join(f"{m}: {report['models'][m]['error']}" for m in failed))
    return {"report": str(run_record.folder / "report.json"), "models": p.models, "sets": p.sets,
            "failed": failed}


def _result_path(results: Path, name: str, name_set: str) -> Path:
    return results / f"{name}.{name_set}.json"


def _save(results: Path, name: str, name_set: str, result: dict[str, Any]) -> None:
    write_json_atomic(_result_path(results, name, name_set), {"model": name, "set": name_set, **result})


def _checkpoint(reporter, results: Path) -> None:
    """A resume point: the finished units are the files in ``results/``."""
    done = sorted(p.name for p in results.glob("*.json") if not p.name.endswith(".error.json")
                  and not p.name.startswith("_prompts."))
    folder = reporter.checkpoint_dir(len(done))
    write_json_atomic(folder / "units.json", done)
    reporter.checkpoint_complete(folder)
    for older in folder.parent.iterdir():  # one resume point is enough: the state is results/
        if older != folder and older.is_dir():
            shutil.rmtree(older, ignore_errors=True)


class EvalData:
    """The rows of each set, read once from the run's own copies, and the prompts built from them."""

    def __init__(self, settings: Settings, config: Config, inputs: dict[str, Path], summary: dict):
        self.settings, self.config, self.inputs = settings, config, inputs
        self._cache: dict[str, Any] = {}
        self.held_out = bool((summary.get("preferences") or {}).get("held_out", True))

    def rows(self, name_set: str) -> list:
        if name_set not in self._cache:
            limit = self.config.max_prompts
            if name_set == "test":
                from workbench.train.data import sft_rows

                rows = [{"messages": r["messages"][:-1], "reference": r["messages"][-1]["content"]}
                        for r in sft_rows(self.inputs["test"]) if r["messages"][-1]["role"] == "assistant"]
                self._cache[name_set] = rows[:limit] if limit else rows
            elif name_set == "preferences":
                self._cache[name_set] = sets_of.preference_pairs(self.inputs["preferences"], self.held_out, limit)
            elif name_set == "rag":
                self._cache[name_set] = self._rag(sets_of.rag_questions(self.inputs["rag"], limit))
        return self._cache[name_set]

    def shown(self, name_set: str) -> dict[str, list[str]]:
        """The prompts as the report shows them, with the reference answer of each."""
        rows = self.rows(name_set)
        if name_set == "test":
            return {"prompts": [r["messages"][-1]["content"] for r in rows], "references": [r["reference"] for r in rows]}
        if name_set == "preferences":
            return {"prompts": [r["prompt"] for r in rows], "references": [r["chosen"] for r in rows]}
        return {"prompts": [q["question"] for q in rows["questions"]], "references": [q["reference"] for q in rows["questions"]]}

    def size(self, name_set: str) -> int:
        return len(self.rows(name_set)) if name_set in ANSWER_SETS else 1

    def _rag(self, questions: list[dict]) -> dict[str, Any]:
        from workbench.index.search import Retriever

        retriever = Retriever(self.settings.workspace, self.settings.embedding_model)
        expected = sets_of.resolve_sources(self.settings.workspace, questions)
        texts = [q["question"] for q in questions]
        ranked = {mode: retriever.search_many(texts, max(self.config.retrieval_k, 10), mode) for mode in ("dense", "hybrid")}
        contexts = [[h.text for h in hits[:self.config.retrieval_k]] for hits in ranked["dense"]]
        return {"questions": questions, "expected": expected, "ranked": ranked, "contexts": contexts}

    def unit(self, loaded: units.Loaded, name_set: str, progress) -> dict[str, Any]:
        if loaded.role == units.REWARD:
            return units.reward_accuracy(loaded, self.rows("preferences"), self.config)
        if name_set == "test":
            return units.test_set(loaded, self.rows("test"), self.config, progress)
        if name_set == "preferences":
            return units.answers_only(loaded, [p["prompt"] for p in self.rows("preferences")], self.config, progress)
        rag = self.rows("rag")
        budget = units.context_window(loaded) - self.config.max_new_tokens
        fitted = [units.fit_context(loaded.tokenizer, q["question"], c, budget)
                  for q, c in zip(rag["questions"], rag["contexts"])]
        result = units.rag_set(loaded, rag["questions"], [f[0] for f in fitted],
                               ["\n\n".join(c) for c in rag["contexts"]], self.config, progress)
        dropped = sum(f[1] for f in fitted)
        if dropped:
            result["note"] = f"{dropped} retrieved chunk(s) left out to fit the model's context"
        return result

    def special(self, name: str, name_set: str, p: Plan, results: Path) -> dict[str, Any]:
        from workbench.evaluate import metrics

        if name == "_votes":
            comparisons = sets_of.vote_comparisons_from(self.inputs["votes"])
            return {"ratings": metrics.bradley_terry(comparisons, seed=self.config.seed), "votes": len(comparisons)}
        if name == "_retrieval":
            rag = self.rows("rag")
            out = {}
            for mode, hits in rag["ranked"].items():
                ranks = [metrics.first_relevant_rank([h.doc_id for h in row], relevant)
                         for row, relevant in zip(hits, rag["expected"])]
                out[mode] = metrics.retrieval_scores(ranks)
            return {"retrieval": out, "questions": len(rag["questions"])}
        # the judge: one reward model scores every policy's answers to the preference prompts
        judge = units.load(self.settings, p.judge)
        prompts = [pair["prompt"] for pair in self.rows("preferences")]
        scores = {}
        for model in p.generators():
            answers_file = _result_path(results, model, "preferences")
            if answers_file.exists():
                answers = (read_json(answers_file) or {}).get("answers") or []
                scores[model] = units.judge_scores(judge, prompts[:len(answers)], answers, self.config)
        del judge
        release_memory()
        return {"judge": p.judge, "scores": scores}
