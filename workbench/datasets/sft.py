"""SFT data: ``data/train.jsonl`` and ``data/test.jsonl``.

Accepted rows, in the formats people use and TRL's ``SFTTrainer`` reads: chat ``messages``
(kept as they are), ``prompt``/``completion`` (kept), and Alpaca ``instruction``/``input``/
``output`` (turned into prompt/completion). An import checks every line first: the first bad
line is reported with its number and nothing is written. Chosen answers from the votes can be
turned into rows too.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from storage.jsonl import JsonlError, append_jsonl, iter_jsonl, write_jsonl_atomic
from workbench.datasets.split import in_test_share
from workbench.errors import WorkbenchError

ROLES = {"system", "user", "assistant"}


def normalise(row: dict[str, Any]) -> dict[str, Any]:
    """The row in a TRL format, or ValueError saying what is wrong with it."""
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError("each message needs a role (system, user or assistant) and text content")
        if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
            raise ValueError("the last message must be a non-empty assistant answer")
        return {"messages": messages}
    if "prompt" in row or "completion" in row:
        prompt, completion = row.get("prompt"), row.get("completion")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("prompt is empty or not text")
        if not isinstance(completion, str) or not completion.strip():
            raise ValueError("completion is empty or not text")
        return {"prompt": prompt, "completion": completion}
    if "instruction" in row:
        instruction, extra, output = row.get("instruction"), row.get("input") or "", row.get("output")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("instruction is empty or not text")
        if not isinstance(output, str) or not output.strip():
            raise ValueError("output is empty or not text")
        if not isinstance(extra, str):
            raise ValueError("input must be text")
        return {"prompt": instruction.strip() + (f"\n\n{extra.strip()}" if extra.strip() else ""), "completion": output}
    raise ValueError("unknown format: expected messages, prompt/completion or instruction/input/output")


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line_no, record in iter_jsonl(Path(path), numbered=True):
        try:
            rows.append(normalise(record))
        except ValueError as exc:
            raise JsonlError(Path(path), line_no, str(exc)) from None
    return rows


def _in_test(row: dict[str, Any], fraction: float, seed: int) -> bool:
    return in_test_share(json.dumps(row, sort_keys=True), fraction, seed)


def _write(path: Path, rows: list[dict[str, Any]], replace: bool) -> None:
    if replace:
        write_jsonl_atomic(path, rows)
    else:
        append_jsonl(path, rows)


def import_rows(source: Path, train: Path, test: Path, into: str = "train", replace: bool = False,
                split: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Validate ``source`` then append (or ``replace``) into train or test; ``split`` sends a
    deterministic share of the rows to test.jsonl instead."""
    if into not in ("train", "test"):
        raise WorkbenchError(f"into must be train or test, got {into!r}")
    if not 0.0 <= split < 1.0:
        raise WorkbenchError(f"split must be in [0, 1), got {split}")
    rows = read_rows(source)
    if not rows:
        raise WorkbenchError(f"{Path(source).name}: no rows")
    if into == "test":
        to_train, to_test = [], rows
        _write(test, to_test, replace)
    else:
        to_test = [r for r in rows if split and _in_test(r, split, seed)]
        to_train = [r for r in rows if not (split and _in_test(r, split, seed))]
        _write(train, to_train, replace)
        if split:
            _write(test, to_test, replace)
    return {"train_rows": len(to_train), "test_rows": len(to_test), "replaced": replace}


def rows_from_feedback(feedback: Path) -> list[dict[str, Any]]:
    """Chosen answers as prompt/completion rows: the rewritten answer when there is one, else the
    winning side of an A/B vote. Ties and both-bad votes give nothing."""
    rows, seen = [], set()
    for v in iter_jsonl(Path(feedback)):
        answer = (v.get("edited_answer") or "").strip() or (
            v.get(f"answer_{v.get('choice')}") if v.get("choice") in ("a", "b") else "")
        if answer and (v["prompt"], answer) not in seen:
            seen.add((v["prompt"], answer))
            rows.append({"prompt": v["prompt"], "completion": answer})
    return rows


def add_chosen_answers(feedback: Path, train: Path, test: Path, into: str = "train") -> dict[str, Any]:
    """Append the votes' chosen answers to train or test."""
    rows = rows_from_feedback(feedback) if Path(feedback).exists() else []
    if not rows:
        raise WorkbenchError("no chosen answers in data/feedback.jsonl yet")
    _write(train if into == "train" else test, rows, replace=False)
    return {"train_rows": len(rows) if into == "train" else 0, "test_rows": 0 if into == "train" else len(rows),
            "replaced": False}


def stats(path: Path, tokenizer=None, samples: int = 3) -> dict[str, Any]:
    """Rows, formats, a sample, and token lengths when a tokenizer is given."""
    rows = read_rows(path)
    formats = {"messages" if "messages" in r else "prompt/completion" for r in rows}
    info: dict[str, Any] = {"file": str(path), "rows": len(rows), "formats": sorted(formats), "sample": rows[:samples]}
    if tokenizer is not None and rows:
        lengths = sorted(len(tokenizer(_text(r))["input_ids"]) for r in rows)
        info["tokens"] = {"min": lengths[0], "median": int(statistics.median(lengths)),
                          "p95": lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))], "max": lengths[-1]}
    return info


def _text(row: dict[str, Any]) -> str:
    if "messages" in row:
        return "\n".join(m["content"] for m in row["messages"])
    return row["prompt"] + "\n" + row["completion"]
