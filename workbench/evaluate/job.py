"""The evaluation job: the chosen models on the chosen sets with the same seed and sampling for
every model. The work is cut into units (one model on one set); each unit's result is a file in
``runs/<id>/results/`` written as soon as it is done, so a cancelled or killed evaluation resumes
without recomputing them, and ``report.json`` is rewritten after every unit (live partial results).
A model that fails to load fails its own row only."""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from storage import read_json, write_json_atomic
from workbench.chat.system_prompt import launched_with, system_input
from workbench.errors import WorkbenchError
from workbench.evaluate import sets as sets_of
from workbench.evaluate import units
from workbench.evaluate.plan import ANSWER_SETS, Config, Plan, plan
from workbench.kinds import Preflight
from workbench.models.generation import context_window
from workbench.models.loading import release_memory
from workbench.reporting import Cancelled
from workbench.settings import Settings

__all__ = ["Config", "preflight", "run"]  # the job kind's module: Config and run (plan.py decides)


def preflight(config: Config, settings: Settings) -> Preflight:
    p = plan(config, settings)
    warnings = [f"set skipped: {s}" for s in p.summary.get("skipped_sets", [])]
    return Preflight({**p.inputs, **system_input(settings.workspace)}, warnings,
                     {"sets": p.sets, "judge": p.judge, "references": p.references,
                                          "units": len(p.units()), **{k: v for k, v in p.summary.items()
                                                                      if k != "skipped_sets"}})


# the job ------------------------------------------------------------------------------------
def run(config: Config, reporter) -> dict[str, Any]:
    from workbench.evaluate.report import write_report

    settings = reporter.settings
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
    system = launched_with(run_record.folder)
    data = EvalData(settings, config, inputs, summary, system.text)
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

    def __init__(self, settings: Settings, config: Config, inputs: dict[str, Path], summary: dict, system: str = ""):
        self.settings, self.config, self.inputs, self.system = settings, config, inputs, system
        self._cache: dict[str, Any] = {}
        self.held_out = bool((summary.get("preferences") or {}).get("held_out", True))

    def rows(self, name_set: str) -> list:
        if name_set not in self._cache:
            limit = self.config.max_prompts
            if name_set == "test":
                from workbench.train.data import sft_rows

                rows = [{"messages": r["messages"][:-1], "reference": r["messages"][-1]["content"]}
                        for r in sft_rows(self.inputs["test"], self.system) if r["messages"][-1]["role"] == "assistant"]
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
        from workbench.evaluate.retrieval import DEPTH, run_retrieval
        from workbench.index.modes import DEFAULT_MODE

        found = run_retrieval(self.settings, questions, depth=max(self.config.retrieval_k, DEPTH))
        contexts = [[h.text for h in hits[:self.config.retrieval_k]] for hits in found.ranked[DEFAULT_MODE]]
        return {"questions": questions, "retrieval": found, "contexts": contexts}

    def unit(self, loaded: units.Loaded, name_set: str, progress) -> dict[str, Any]:
        if loaded.role == units.REWARD:
            return units.reward_accuracy(loaded, self.rows("preferences"), self.config)
        if name_set == "test":
            return units.test_set(loaded, self.rows("test"), self.config, progress)
        if name_set == "preferences":
            return units.answers_only(loaded, [p["prompt"] for p in self.rows("preferences")], self.config, progress,
                                      self.system)
        rag = self.rows("rag")
        budget = context_window(loaded.model) - self.config.max_new_tokens
        fitted = [units.fit_context(loaded.tokenizer, q["question"], c, budget, self.system)
                  for q, c in zip(rag["questions"], rag["contexts"])]
        result = units.rag_set(loaded, rag["questions"], [f[0] for f in fitted],
                               ["\n\n".join(c) for c in rag["contexts"]], self.config, progress, self.system)
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
            found = self.rows("rag")["retrieval"]
            return {"retrieval": found.scores(), "questions": len(found.questions),
                    "misses": {mode: found.misses(mode) for mode in found.ranked}}
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
