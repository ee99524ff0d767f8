"""A synthetic corpus for the speed benchmarks: report-like English texts made of varied template
sentences (facts, names, projects, numbers; ~8 chunks of 200 tokens each at the default length),
the questions a user would ask of them, and the corpus put through ``workbench ingest``'s own
path (``add_paths``, a ``corpus.ingest`` run executed in this process)."""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any


def say(line: str = "") -> None:
    print(line, flush=True)


SUBJECTS = [
    "the ingestion worker", "the retention policy", "the billing service", "the vector index",
    "the nightly backup", "the vendor contract", "the audit log", "the staging cluster",
    "the onboarding guide", "the GPU scheduler", "the tokenizer", "the customer portal",
    "the incident review", "the pricing model", "the data warehouse", "the mobile app",
    "the travel handbook", "the security team", "the annual budget", "the shipping estimate",
    "the payroll export", "the search relevance report", "the load balancer", "the legal memo",
    "the quarterly forecast", "the support rota", "the firmware update", "the warehouse robot",
    "the translation memory", "the compliance checklist", "the cooling system", "the press release",
]
VERBS = [
    ("reduces", "reduced"), ("increases", "increased"), ("depends on", "depended on"),
    ("replaces", "replaced"), ("documents", "documented"), ("monitors", "monitored"),
    ("delays", "delayed"), ("requires", "required"), ("validates", "validated"),
    ("summarises", "summarised"), ("overrides", "overrode"), ("caches", "cached"),
    ("exports", "exported"), ("limits", "limited"), ("duplicates", "duplicated"),
]
OBJECTS = [
    "latency under load", "the number of open tickets", "disk usage on the archive volume",
    "the refund window", "memory use of the parser", "the approval chain for purchases",
    "the error budget", "overtime requests", "the cost of cold storage", "model accuracy on the test set",
    "the delivery schedule", "password rotation", "the size of the monthly invoice",
    "customer churn", "the on-call escalation path", "the carbon report", "licence renewals",
    "the backlog of translations", "queue depth at night", "the battery life of handhelds",
]
QUALIFIERS = [
    "since the March release", "for enterprise customers", "unless the override flag is set",
    "during peak hours", "in the Frankfurt region", "for every new hire", "after the migration",
    "when the cache is cold", "on weekends", "for contracts above fifty thousand euros",
    "in the first quarter", "while the audit is open", "for archived projects", "at most once a day",
]
NAMES = ["Amara Osei", "Lukas Brenner", "Mei Tanaka", "Diego Alvarez", "Sofia Rossi", "Ivan Petrov",
         "Nadia Haddad", "Tom Whitaker", "Priya Raman", "Elif Kaya", "Jonas Berg", "Chloe Martin"]
DEPARTMENTS = ["platform", "finance", "legal", "operations", "research", "people", "security", "sales"]
PROJECTS = ["Atlas", "Borealis", "Cedar", "Dynamo", "Ember", "Fjord", "Granite", "Harbor", "Iris",
            "Juniper", "Kestrel", "Lumen", "Mosaic", "Nimbus", "Orchid", "Pioneer"]
NOUNS = ["retention period", "response target", "storage quota", "review cycle", "price cap",
         "latency budget", "notice period", "batch size", "warranty term", "sampling rate"]
UNITS = ["days", "hours", "gigabytes", "weeks", "milliseconds", "percent", "euros", "months"]


def _sentence(rng: random.Random) -> str:
    s, (v, v_past), o, q = (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS),
                            rng.choice(QUALIFIERS))
    templates = [
        f"{s} {v} {o} {q}.",
        f"According to {rng.choice(NAMES)}, {s} {v} {o}.",
        f"The {rng.choice(NOUNS)} for project {rng.choice(PROJECTS)} is {rng.randint(2, 900)} {rng.choice(UNITS)} {q}.",
        f"If {s} fails, {rng.choice(SUBJECTS)} {v} {o} within {rng.randint(2, 90)} minutes.",
        f"Questions about {o} go to {rng.choice(NAMES)} in the {rng.choice(DEPARTMENTS)} team.",
        f"In {rng.randint(2015, 2026)}, {s} {v_past} {o} by {rng.randint(2, 60)} percent.",
        f"Nobody expected that {s} {v} {o}, but the {rng.choice(DEPARTMENTS)} review confirmed it {q}.",
        f"Project {rng.choice(PROJECTS)} keeps a copy of {o}; {s} {v} it {q}.",
    ]
    text = rng.choice(templates)
    return text[0].upper() + text[1:]


def make_document(rng: random.Random, number: int, words: int) -> str:
    """A titled text of paragraphs (3-7 sentences each) of about ``words`` words."""
    paragraphs = [f"Report {number}: {rng.choice(SUBJECTS)} and {rng.choice(OBJECTS)}"]
    count = 0
    while count < words:
        paragraph = " ".join(_sentence(rng) for _ in range(rng.randint(3, 7)))
        paragraphs.append(paragraph)
        count += len(paragraph.split())
    return "\n\n".join(paragraphs) + "\n"


def write_corpus(folder: Path, docs: int, words: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(docs):
        path = folder / f"report-{i:04d}.txt"
        path.write_text(make_document(rng, i, int(words * rng.uniform(0.6, 1.4))), encoding="utf-8")
        paths.append(path)
    return paths


def make_queries(count: int, seed: int) -> list[str]:
    rng = random.Random(seed + 1)
    forms = [
        lambda: f"What is the {rng.choice(NOUNS)} for project {rng.choice(PROJECTS)}?",
        lambda: f"Who handles questions about {rng.choice(OBJECTS)}?",
        lambda: f"How does {rng.choice(SUBJECTS)} affect {rng.choice(OBJECTS)}?",
        lambda: f"What changed in {rng.randint(2015, 2026)} for {rng.choice(SUBJECTS)}?",
        lambda: f"Which team reviews {rng.choice(OBJECTS)} {rng.choice(QUALIFIERS)}?",
    ]
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen.setdefault(rng.choice(forms)(), None)
    return list(seen)


def ingest(settings, corpus: Path, chunk_size: int) -> tuple[float, dict[str, Any], Path]:
    """``workbench ingest CORPUS`` in this process: (wall seconds, the run's result, its folder)."""
    from jobs import control
    from jobs.runner import execute
    from workbench.corpus.library import add_paths

    workspace = settings.workspace.ensure()
    added = add_paths(workspace, [corpus], settings.max_upload_mb * 1_000_000)
    doc_ids = [a.doc["id"] for a in added if a.doc and a.created]
    run = control.create(settings, "corpus.ingest", {"doc_ids": doc_ids, "chunk_size": chunk_size})
    started = time.perf_counter()
    status = execute(settings, run.id)
    wall = time.perf_counter() - started
    if status.get("status") != "succeeded":
        raise SystemExit(f"ingest run {run.id} {status.get('status')}: {status.get('error')}")
    return wall, status["result"], run.folder
