"""The rows each method trains on, read from the run's own copy of its data files and checked
line by line: SFT conversations, preference pairs, prompts. A wrong kind of row (SFT rows given
to DPO) is named as such."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from storage import NameRefused, Workspace, resolve_under
from storage.jsonl import JsonlError, iter_jsonl
from workbench.chat.prompt import chat_messages
from workbench.datasets.sft import normalise
from workbench.datasets.split import in_test_share
from workbench.errors import WorkbenchError

NONE = "none"


def data_file(workspace: Workspace, name: str) -> Path:
    """An existing data file named relative to ``data/`` (``sets/q.jsonl``); nothing outside it."""
    try:
        return resolve_under(workspace.data, name, label="data/", what="dataset")
    except NameRefused as exc:
        raise WorkbenchError(f"{exc}: name a file under data/ (the Train tab lists them)") from None


def _kind_of(row: dict[str, Any]) -> str:
    if "chosen" in row or "rejected" in row:
        return "preference pairs (prompt/chosen/rejected)"
    if "messages" in row or "completion" in row or "instruction" in row:
        return "SFT rows (messages or prompt/completion)"
    if "prompt" in row:
        return "prompts"
    return "rows of an unknown format"


def _read(path: Path, convert, expected: str) -> list[dict[str, Any]]:
    rows = []
    for line_no, record in iter_jsonl(path, numbered=True):
        if not isinstance(record, dict):
            raise JsonlError(path, line_no, "expected a JSON object")
        try:
            rows.append(convert(record))
        except ValueError as exc:
            found = _kind_of(record)
            hint = f" (this looks like {found}; this method needs {expected})" if expected not in found else ""
            raise JsonlError(path, line_no, f"{exc}{hint}") from None
    if not rows:
        raise WorkbenchError(f"{path.name} has no rows")
    return rows


def _conversation(record: dict[str, Any]) -> dict[str, Any]:
    row = normalise(record)
    if "messages" in row:
        return row
    return {"messages": chat_messages(row["prompt"]) + [{"role": "assistant", "content": row["completion"]}]}


def sft_rows(path: Path) -> list[dict[str, Any]]:
    """Conversations (``messages``); prompt/completion and Alpaca rows become one exchange."""
    return _read(path, _conversation, "SFT rows")


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} is missing, empty or not text")
    return value


def _pair(record: dict[str, Any]) -> dict[str, str]:
    row = {key: _text(record, key) for key in ("prompt", "chosen", "rejected")}
    if row["chosen"].strip() == row["rejected"].strip():
        raise ValueError("chosen and rejected are the same answer")
    return row


def preference_pairs(path: Path) -> list[dict[str, str]]:
    """``prompt``/``chosen``/``rejected`` strings, as merge-feedback writes them."""
    return _read(path, _pair, "preference pairs")


def prompts(path: Path) -> list[str]:
    """Unique prompts of a preference file or of prompt-only rows, in file order."""
    rows = _read(path, lambda r: _text(r, "prompt"), "prompts")
    return list(dict.fromkeys(rows))


def conversational_pair(pair: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    """A pair in TRL's conversational form, so the chat template frames it as the model sees it."""
    return {"prompt": chat_messages(pair["prompt"]),
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}]}


def split_off(rows: list[Any], key, fraction: float = 0.1, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """(train, held out) by a deterministic hash of ``key(row)``, at least one row each side."""
    out = [in_test_share(key(r), fraction, seed) for r in rows]
    if not any(out) and len(rows) > 1:
        out[-1] = True
    held = [r for r, o in zip(rows, out) if o]
    train = [r for r, o in zip(rows, out) if not o]
    if not train:
        raise WorkbenchError("too few rows to hold some out for evaluation: add rows or give eval_dataset")
    return train, held
