"""The evaluation sets, read and checked: SFT references (``data/test.jsonl``), the held-out
preference pairs, a RAG question set (JSONL or TSV: question, expected source documents, optional
reference answer) and the human votes of ``data/feedback.jsonl`` as model-against-model outcomes."""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from storage import Workspace
from storage.documents import DocumentStore
from storage.jsonl import JsonlError, iter_jsonl
from workbench.errors import WorkbenchError
from workbench.evaluate.metrics import Comparison
from workbench.limits import QUESTION_CHARS, QUESTION_SET_ROWS, REFERENCE_CHARS, check_count, check_text
from workbench.train import data as rows_of

_SETTINGS_SUFFIX = re.compile(r"\s+\(temperature [^)]*\)$")
SETS = ("test", "preferences", "rag", "votes")
RAG_SET = "rag_questions.jsonl"
PREFERENCES_HELD_OUT = "dataset_rlhf_test.jsonl"


class EmptySet(WorkbenchError):
    """A set that has no rows to evaluate on."""


def test_rows(workspace: Workspace, limit: int = 0) -> list[dict[str, Any]]:
    """``messages`` (the conversation before the reference reply) and ``reference`` per row."""
    path = workspace.test_file
    if not path.is_file():
        raise EmptySet(f"the test set needs {path}: SFT rows held out from training")
    rows = []
    for row in rows_of.sft_rows(path):
        messages = row["messages"]
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            continue
        rows.append({"messages": messages[:-1], "reference": messages[-1]["content"]})
    if not rows:
        raise EmptySet(f"{path.name} has no row that ends with an assistant reply")
    return rows[:limit] if limit else rows


def preference_source(workspace: Workspace) -> tuple[Path, bool]:
    """(file, whether it is all held out): ``data/dataset_rlhf_test.jsonl`` when present, else
    ``dataset_rlhf.jsonl``, of which the reward model's default split holds some pairs out."""
    held = workspace.data / PREFERENCES_HELD_OUT
    if held.is_file():
        return held, True
    merged = workspace.rlhf_file
    if not merged.is_file():
        raise EmptySet("the preferences set needs data/dataset_rlhf.jsonl (merge the votes in Annotate) "
                       f"or data/{PREFERENCES_HELD_OUT}")
    return merged, False


def preference_pairs(path: Path, held_out: bool, limit: int = 0) -> list[dict[str, str]]:
    """The held-out pairs: the whole file, or the share the reward model's default split holds out
    (the same seed and fraction, so a reward model is never scored on its training pairs)."""
    pairs = rows_of.preference_pairs(path)
    if not held_out:
        from workbench.train.reward import Config as RewardConfig

        split = RewardConfig()
        pairs = rows_of.held_out_split(pairs, split.eval_fraction, split.seed)[1]
    return pairs[:limit] if limit else pairs


def _sources(value: Any) -> list[str]:
    if isinstance(value, str):
        return [s.strip() for s in value.replace(";", "|").split("|") if s.strip()]
    if isinstance(value, list):
        return [str(s).strip() for s in value if str(s).strip()]
    return []


def _question(record: dict[str, Any], where: str) -> dict[str, Any]:
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise WorkbenchError(f"{where}: 'question' is missing or empty")
    sources = _sources(record.get("sources", record.get("source")))
    if not sources:
        raise WorkbenchError(f"{where}: 'sources' names no document (the document(s) that answer it)")
    reference = record.get("reference", record.get("answer")) or ""
    return {"question": question.strip(), "sources": sources,
            "reference": reference.strip() if isinstance(reference, str) else ""}


def rag_questions(path: Path, limit: int = 0) -> list[dict[str, Any]]:
    """Questions of a JSONL file (``question``, ``sources`` list or ``a|b``, ``reference``) or a
    TSV with a header row of the same names."""
    if not path.is_file():
        raise EmptySet(f"the rag set needs {path}: write questions in the Evaluate tab or give a JSONL/TSV file")
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.read(4096).lstrip()
    if first and not first.startswith("{"):  # TSV (a JSONL row starts with "{")
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            if not reader.fieldnames or "question" not in reader.fieldnames:
                raise WorkbenchError(f"{path.name}: the first line must name the columns: question, sources, reference")
            for line_no, record in enumerate(reader, start=2):
                rows.append(_question(record, f"{path.name} line {line_no}"))
    else:
        for line_no, record in iter_jsonl(path, numbered=True):
            if not isinstance(record, dict):
                raise JsonlError(path, line_no, "expected a JSON object")
            rows.append(_question(record, f"{path.name} line {line_no}"))
    if not rows:
        raise EmptySet(f"{path.name} has no questions")
    check_count(f"questions in {path.name}", len(rows), QUESTION_SET_ROWS)
    return rows[:limit] if limit else rows


def resolve_sources(workspace: Workspace, questions: list[dict[str, Any]]) -> list[set[str]]:
    """The document ids each question expects; refuses names that are not in the corpus."""
    store = DocumentStore(workspace)
    missing, out = [], []
    for q in questions:
        ids = set()
        for ref in q["sources"]:
            doc = store.find(ref)
            if doc is None:
                missing.append(ref)
            else:
                ids.add(doc["id"])
        out.append(ids)
    if missing:
        names = ", ".join(sorted(set(missing))[:8])
        raise WorkbenchError(f"the rag set names documents that are not in the corpus: {names}; upload them "
                             "in Corpus or fix the question set")
    return out


def model_of(label: Any) -> str:
    """The model of a vote's side: Annotate labels a side ``name (temperature 0.7)``."""
    return _SETTINGS_SUFFIX.sub("", str(label or "").strip())


def vote_comparisons(workspace: Workspace) -> list[Comparison]:
    path = workspace.feedback_file
    if not path.is_file():
        raise EmptySet("the votes set needs data/feedback.jsonl: vote in the Annotate tab")
    return vote_comparisons_from(path)


def vote_comparisons_from(path: Path) -> list[Comparison]:
    """Each vote between two named, different models as an outcome (a tie or "both bad" is a draw)."""
    outcomes = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
    comparisons = []
    for vote in iter_jsonl(path):
        if not isinstance(vote, dict):
            continue
        a, b = model_of(vote.get("model_a")), model_of(vote.get("model_b"))
        if a and b and a != b and vote.get("choice") in outcomes:
            comparisons.append(Comparison(a, b, outcomes[vote["choice"]]))
    if not comparisons:
        raise EmptySet("no vote in data/feedback.jsonl compares two different models")
    return comparisons


def append_question(workspace: Workspace, name: str, question: str, sources: list[str], reference: str = "",
                    chunk_id: str = "") -> dict[str, Any]:
    """Add one question to the RAG set ``name`` (JSONL, under ``data/``, created if missing),
    checked like the set's other rows and against the corpus first: nothing is written for a bad one."""
    from storage import NameRefused, append_jsonl, resolve_under

    try:
        path = resolve_under(workspace.data, name, must_exist=False, label="data/", what="question set")
    except NameRefused as exc:
        raise WorkbenchError(f"{exc}: name a .jsonl file under data/") from None
    if path.suffix != ".jsonl":
        raise WorkbenchError(f"{name!r}: questions are added to a .jsonl set (a TSV set is edited by hand)")
    row = _question({"question": question, "sources": sources, "reference": reference}, "the question")
    check_text("the question", row["question"], QUESTION_CHARS)
    check_text("the reference answer", row["reference"], REFERENCE_CHARS)
    resolve_sources(workspace, [row])
    if chunk_id:
        row["chunk_id"] = chunk_id
    path.parent.mkdir(parents=True, exist_ok=True)
    append_jsonl(path, [row])
    return row
