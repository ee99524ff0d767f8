"""The evaluation job: the chosen models on the chosen sets with the same seed and sampling for
every model. The work is cut into units (``plan.Unit``: one model on one set, or a measure of a
whole set); each unit's result is a file in ``runs/<id>/results/`` written as soon as it is done,
so a cancelled or killed evaluation resumes without recomputing them, and ``report.json`` is
rewritten after every unit (live partial results). A model that fails to load fails its own row
only."""
from __future__ import annotations

import dataclasses
import shutil
import time
from itertools import groupby
from pathlib import Path
from typing import Any

from storage import write_json_atomic
from workbench.chat.system_prompt import launched_with, system_input
from workbench.errors import WorkbenchError
from workbench.evaluate import units
from workbench.evaluate.data import EvalData
from workbench.evaluate.plan import ANSWER_SETS, JUDGE, PROMPTS, RETRIEVAL, VOTES, Config, Plan, Unit, plan
from workbench.job_context import JobContext
from workbench.kinds import Preflight
from workbench.models.loading import release_memory
from workbench.reporting import Cancelled
from workbench.settings import Settings

__all__ = ["Config", "preflight", "run"]  # the job kind's module: Config and run (plan.py decides)


def preflight(config: Config, settings: Settings) -> Preflight:
    p = plan(config, settings)
    warnings = [f"set skipped: {s}" for s in p.summary.get("skipped_sets", [])]
    return Preflight({**p.inputs, **system_input(settings.workspace)}, warnings,
                     {"sets": p.sets, "judge": p.judge, "references": p.references, "units": len(p.units()),
                      **{k: v for k, v in p.summary.items() if k != "skipped_sets"}})


def run(config: Config, context: JobContext) -> dict[str, Any]:
    reporter = context.reporter
    settings, record = context.settings, context.run
    summary = record.status().get("preflight") or {}
    if summary.get("sets"):  # the sets found when it was queued, not a new guess
        config = dataclasses.replace(config, sets=list(summary["sets"]))
    p = plan(config, settings)
    data = EvalData(settings, config, {role: record.inputs / f"{role}.jsonl" for role in p.inputs}, summary,
                    launched_with(record.folder).text)
    evaluation = Evaluation(config, p, data, context)
    started = time.perf_counter()
    evaluation.run()
    report = evaluation.write_report(html=True)
    reporter.log(f"report: {record.folder / 'report.html'} ({time.perf_counter() - started:.1f} s)")
    failed = [m for m, row in report["models"].items() if row.get("error")]
    if failed and len(failed) == len(p.models):
        raise WorkbenchError("every model failed: " + "; ".join(f"{m}: {report['models'][m]['error']}" for m in failed))
    return {"report": str(record.folder / "report.json"), "models": p.models, "sets": p.sets, "failed": failed}


class Evaluation:
    """One attempt at a run's units. It alone moves the progress: a unit counts once it is saved,
    failed or found done by an earlier attempt."""

    def __init__(self, config: Config, p: Plan, data: EvalData, context: JobContext):
        self.config, self.plan, self.data, self.context = config, p, data, context
        self.reporter = context.reporter
        self.results = context.run.folder / "results"
        self.results.mkdir(exist_ok=True)
        for stale in self.results.glob("*.error.json"):  # a new attempt tries failed models again
            stale.unlink()
        self.todo = p.units()
        self.at = 0

    def run(self) -> None:
        for name_set in ANSWER_SETS:
            shown = Unit(PROMPTS, name_set)
            if name_set in self.plan.sets and not shown.path(self.results).exists():
                write_json_atomic(shown.path(self.results), self.data.shown(name_set))
        done = sum(self.done(u) for u in self.todo)
        if done:
            self.reporter.log(f"resuming: {done} of {len(self.todo)} units already done, kept")
        self.reporter.log(f"evaluating {', '.join(self.plan.models)} on {', '.join(self.plan.sets)}"
                          + (f"; win-rates judged by {self.plan.judge}" if self.plan.judge else ""))
        for model, group in groupby(self.todo, key=lambda u: u.model):  # a model's sets are together
            group = list(group)
            if all(self.done(u) for u in group):
                self.at += len(group)
                continue
            self.reporter.check_cancel()
            if model:
                self.model_units(model, group)
            else:
                for unit in group:
                    self.set_wide(unit)
        self.reporter.progress(len(self.todo), len(self.todo), "writing the report")

    def done(self, unit: Unit) -> bool:
        return unit.path(self.results).exists()

    def show(self, what: str, share: float = 0.0) -> None:
        self.reporter.check_cancel()
        self.reporter.progress(self.at + share, len(self.todo), what)

    def set_wide(self, unit: Unit) -> None:
        if not self.done(unit):
            self.show(unit.label())
            measure = {RETRIEVAL: self.data.retrieval, VOTES: self.data.votes,
                       JUDGE: lambda: self.data.judge(self.plan, self.results)}[unit.kind]
            self.save(unit, measure())
        self.at += 1

    def model_units(self, model: str, group: list[Unit]) -> None:
        """Load the model once for all its sets; a failure fails the rest of its row."""
        self.show(f"loading {model}")
        try:
            loaded = units.load(self.context.settings, model)
        except Exception as exc:  # this model's row fails; the others are scored
            self.fail(model, f"{type(exc).__name__}: {exc}", f"{model}: failed to load: {type(exc).__name__}: {exc}",
                      len(group))
            return
        for n, unit in enumerate(group):
            if self.done(unit):
                self.at += 1
                continue
            size = self.data.size(unit.set)
            self.show(unit.label())
            began = time.perf_counter()
            try:
                result = self.data.unit(loaded, unit.set,
                                        lambda done, total=size: self.show(unit.label(), done / max(total, 1)))
            except Cancelled:
                raise
            except Exception as exc:  # this model's row fails; the others are scored
                self.fail(model, f"{unit.set}: {type(exc).__name__}: {exc}",
                          f"{unit.label()}: failed: {type(exc).__name__}: {exc}", len(group) - n)
                break
            result["seconds"] = round(time.perf_counter() - began, 2)
            found = [f"{k} {v:.4g}" for k, v in result.get("metrics", {}).items() if isinstance(v, (int, float))]
            self.reporter.log(f"{unit.label()}: " + (", ".join(found) or f"{len(result.get('answers', []))} answers")
                              + f" ({result['seconds']:.1f} s)" + (f"; {result['note']}" if result.get("note") else ""))
            self.save(unit, result)
            self.at += 1
        del loaded
        release_memory()

    def fail(self, model: str, error: str, said: str, units_left: int) -> None:
        """The model's row fails with ``error`` (the report shows it), its units left count as done."""
        self.reporter.log(said)
        write_json_atomic(self.results / f"{model}.error.json", {"model": model, "error": error})
        self.at += units_left

    def save(self, unit: Unit, result: dict[str, Any]) -> None:
        write_json_atomic(unit.path(self.results), {"model": unit.model or f"_{unit.kind}", "set": unit.set, **result})
        _checkpoint(self.reporter, self.results)
        self.write_report()

    def write_report(self, html: bool = False) -> dict[str, Any]:
        from workbench.evaluate.report import write_report

        return write_report(self.context.run.folder, self.config, self.plan, self.context.settings, html=html)


def _checkpoint(reporter, results: Path) -> None:
    """A resume point: the finished units are the files in ``results/``."""
    done = sorted(p.name for p in results.glob("*.json") if not p.name.endswith(".error.json")
                  and not p.name.startswith(f"_{PROMPTS}."))
    folder = reporter.checkpoint_dir(len(done))
    write_json_atomic(folder / "units.json", done)
    reporter.checkpoint_complete(folder)
    for older in folder.parent.iterdir():  # one resume point is enough: the state is results/
        if older != folder and older.is_dir():
            shutil.rmtree(older, ignore_errors=True)
