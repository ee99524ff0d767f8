"""The job kinds: what each one runs, on which queue ("gpu" kinds run one at a time per GPU),
and its config class. The worker, the CLI and the UI all look kinds up here."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from workbench.configs import config_from_dict


@dataclass
class Preflight:
    """What a kind's ``preflight(config, settings)`` returns before a job is queued (a bad launch
    raises instead, with what to fix): the files to copy into ``runs/<id>/inputs/``, warnings
    to show, and choices made at launch that the job must keep (``summary``)."""
    inputs: dict[str, Path]  # role ("train", "eval") -> the file copied into runs/<id>/inputs/
    warnings: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Watch:
    """What Monitor shows first for a kind's run: two to four curves (the rest on demand) and the
    result figure of the plain sentence: ``eval_<headline>`` on held-out data after the run,
    ``before_<headline>`` before it, over ``held_out`` items."""
    curves: tuple[str, ...]
    headline: str | None = None
    label: str = ""
    higher_is_better: bool = True
    items: str = "items"  # what the held-out items are: "prompts", "pairs"


@dataclass(frozen=True)
class JobKind:
    name: str
    queue: str  # "gpu": heavy model work, one at a time per GPU; "cpu": short work beside it
    module: str  # the module holds ``Config`` and ``run(config, context)`` (a ``JobContext``)
    description: str

    def load(self) -> tuple[type, Callable[..., Any]]:
        module = importlib.import_module(self.module)
        return module.Config, module.run

    def gpus(self, config: dict[str, Any]) -> int:
        """How many GPUs a job of this kind reserves: ``num_processes`` for training (one rank
        per GPU), one for any other GPU-queue job, none for the CPU queue."""
        if self.queue != "gpu":
            return 0
        try:
            return max(1, int(config.get("num_processes") or 1))
        except (TypeError, ValueError):
            return 1

    def config(self, values: dict[str, Any] | None):
        """The kind's typed ``Config`` from a form's or a command line's values, defaults filled
        in; raises ``ConfigError`` naming what is wrong. It is a dict again only on disk."""
        config_cls, _ = self.load()
        return config_from_dict(config_cls, values)

    def watch(self) -> Watch | None:
        """The module's ``WATCH``, or None for kinds whose runs draw no curves of their own."""
        return getattr(importlib.import_module(self.module), "WATCH", None)

    def preflight(self, config, settings) -> Any:
        """The module's checks of its typed ``config`` against the workspace (data, models, names)
        before anything is queued: a ``Preflight`` with the files to copy into the run, or None
        for kinds without."""
        check = getattr(importlib.import_module(self.module), "preflight", None)
        return None if check is None else check(config, settings)


KINDS: dict[str, JobKind] = {k.name: k for k in [
    JobKind("selftest", "gpu", "workbench.selftest",
            "Fit a tiny model for a few steps: proves the queue, the device, logs, curves, "
            "checkpoints, cancel and resume end to end."),
    JobKind("corpus.ingest", "cpu", "workbench.corpus.ingest",
            "Parse, chunk and embed pending documents into the FAISS index (incremental)."),
    JobKind("corpus.delete", "cpu", "workbench.corpus.delete",
            "Delete documents, their originals and their chunks (an HNSW index is rebuilt without them)."),
    JobKind("models.pull", "cpu", "workbench.models.provision",
            "Provision the base model into models/base (default: SmolLM2-135M-Instruct, offline)."),
    JobKind("train.sft", "gpu", "workbench.train.sft",
            "Supervised fine-tuning with LoRA or QLoRA on data/train.jsonl (loss on the replies)."),
    JobKind("train.reward", "gpu", "workbench.train.reward",
            "Reward model: a scoring head trained on the preference pairs of data/dataset_rlhf.jsonl."),
    JobKind("train.dpo", "gpu", "workbench.train.dpo",
            "Direct preference optimisation with LoRA on data/dataset_rlhf.jsonl."),
    JobKind("train.grpo", "gpu", "workbench.train.grpo",
            "GRPO: the policy samples answers to the preference prompts, scored by the reward model "
            "and optional Python rewards."),
    JobKind("train.ppo", "gpu", "workbench.train.ppo",
            "PPO (the seed's RLHF): a LoRA policy, the reward model, a value model initialised from it."),
    JobKind("pairs.generate", "gpu", "workbench.feedback.generation",
            "Generate both answers of new A/B pairs in batches, before annotators open them."),
    JobKind("pairs.score", "gpu", "workbench.feedback.informative",
            "Score the open pairs of a set with the newest reward model, for the most informative pair next."),
    JobKind("evaluate", "gpu", "workbench.evaluate.job",
            "Score models side by side: held-out references, preference win-rates, RAG questions, human votes."),
    JobKind("models.merge", "gpu", "workbench.train.merge",
            "Merge an adapter (and its lineage) into a full safetensors model folder."),
]}

TRAIN_METHODS = {name.split(".", 1)[1]: name for name in KINDS if name.startswith("train.")}


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown job kind {name!r}; known: {', '.join(sorted(KINDS))}") from None
