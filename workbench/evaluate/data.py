"""The rows an evaluation scores, read once from the run's own copies of its sets, and what each
unit does with them: a model's answers, losses or scores on a set, and the set-wide measures
(the retrieval of the RAG questions, the ratings from the votes, the judge's scores of the
policies' answers)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from storage import read_json
from workbench.evaluate import sets as sets_of
from workbench.evaluate import units
from workbench.evaluate.plan import ANSWER_SETS, Config, Plan, model_unit
from workbench.models.generation import context_window
from workbench.models.loading import release_memory
from workbench.settings import Settings


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

    def retrieval(self) -> dict[str, Any]:
        found = self.rows("rag")["retrieval"]
        return {"retrieval": found.scores(), "questions": len(found.questions),
                "misses": {mode: found.misses(mode) for mode in found.ranked}}

    def votes(self) -> dict[str, Any]:
        from workbench.evaluate import metrics

        comparisons = sets_of.vote_comparisons_from(self.inputs["votes"])
        return {"ratings": metrics.bradley_terry(comparisons, seed=self.config.seed), "votes": len(comparisons)}

    def judge(self, plan: Plan, results: Path) -> dict[str, Any]:
        """One reward model scores every policy's answers to the preference prompts."""
        judge = units.load(self.settings, plan.judge)
        prompts = [pair["prompt"] for pair in self.rows("preferences")]
        scores = {}
        for model in plan.generators():
            answers = (read_json(model_unit(model, "preferences").path(results)) or {}).get("answers") or []
            if answers:
                scores[model] = units.judge_scores(judge, prompts[:len(answers)], answers, self.config)
        del judge
        release_memory()
        return {"judge": plan.judge, "scores": scores}
