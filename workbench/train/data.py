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
from workbench.datasets.split import in_test_share, share_point
from workbench.errors import WorkbenchError
from workbench.feedback.merge import WRITTEN

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


def _conversation(record: dict[str, Any], system: str = "") -> dict[str, Any]:
    row = normalise(record)
    if "messages" in row:
        return row
    return {"messages": chat_messages(row["prompt"], system) + [{"role": "assistant", "content": row["completion"]}]}


def sft_rows(path: Path, system: str = "") -> list[dict[str, Any]]:
    """Conversations (``messages``); prompt/completion and Alpaca rows become one exchange under
    the system prompt ``system``. A row that brings its own ``messages`` is taken as it is."""
    return _read(path, lambda record: _conversation(record, system), "SFT rows")


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


def written_answers(path: Path) -> int:
    """How many pairs of a preference file (read by ``preference_pairs`` first) have a chosen
    answer an annotator wrote: merge-feedback marks them in ``model_chosen``."""
    return sum(r.get("model_chosen") == WRITTEN for r in iter_jsonl(path))


def prompts(path: Path) -> list[str]:
    """Unique prompts of a preference file or of prompt-only rows, in file order."""
    rows = _read(path, lambda r: _text(r, "prompt"), "prompts")
    return list(dict.fromkeys(rows))


def conversational_pair(pair: dict[str, str], system: str = "") -> dict[str, list[dict[str, str]]]:
    """A pair in TRL's conversational form, so the chat template frames it as the model sees it."""
    return {"prompt": chat_messages(pair["prompt"], system),
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}]}


def split_off(rows: list[Any], key, fraction: float = 0.1, seed: int = 0, minimum: int = 1) -> tuple[list[Any], list[Any]]:
    """(train, held out) by a deterministic hash of ``key(row)``: a key whose hash falls in
    ``fraction`` is held out, then the keys with the next smallest hashes until ``minimum`` keys
    are (a row keeps its side as data is added, unless it only filled the minimum); at least one
    key trains."""
    keys = list(dict.fromkeys(key(r) for r in rows))
    held_keys = {k for k in keys if in_test_share(k, fraction, seed)}
    if len(held_keys) < minimum and len(keys) > 1:
        rest = sorted((k for k in keys if k not in held_keys), key=lambda k: share_point(k, seed))
        held_keys |= set(rest[:min(minimum, len(keys) - 1) - len(held_keys)])
    held = [r for r in rows if key(r) in held_keys]
    train = [r for r in rows if key(r) not in held_keys]
    if not train:
        raise WorkbenchError("too few rows to hold some out for evaluation: add rows or give eval_dataset")
    return train, held


MIN_HELD_OUT = 5  # a held-out accuracy on fewer pairs moves in steps of more than 0.2
MIN_TRAINING = 5


def held_out_split(pairs: list[dict[str, str]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """The preference methods' default split (and the evaluation's, which must match it): by
    prompt, ``fraction`` held out and never fewer than ``MIN_HELD_OUT`` prompts; fewer than
    ``MIN_HELD_OUT + MIN_TRAINING`` prompts are refused with what to do."""
    prompts = len({p["prompt"] for p in pairs})
    if prompts < MIN_HELD_OUT + MIN_TRAINING:
        raise WorkbenchError(
            f"{prompts} prompts with pairs: holding some out needs at least {MIN_HELD_OUT + MIN_TRAINING} "
            f"({MIN_HELD_OUT} held out to measure, {MIN_TRAINING} to train): collect "
            f"{MIN_HELD_OUT + MIN_TRAINING - prompts} more, give eval_dataset (the held-out file "
            "`workbench merge-feedback --test-fraction` writes), or set eval_dataset none")
    return split_off(pairs, lambda p: p["prompt"], fraction, seed, MIN_HELD_OUT)
