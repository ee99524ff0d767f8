"""What the Train tab shows beside the form: what each method needs, which data files exist, and a
dataset's row count and first rows read the way the method will read them. Each method's module
says what it needs (``NEEDS``), how it reads its rows (``read_rows``) and what a row is (``ROWS``)."""
from __future__ import annotations

import importlib
import json
from types import ModuleType

from storage import Workspace
from workbench.errors import WorkbenchError
from workbench.kinds import TRAIN_METHODS, get_kind
from workbench.train import data as rows_of

NOT_TRAINING_DATA = {"feedback.jsonl", "chat_turns.jsonl", "pairs.jsonl"}


def method_module(method: str) -> ModuleType:
    return importlib.import_module(get_kind(TRAIN_METHODS[method]).module)


def needs_text(method: str) -> str:
    return method_module(method).NEEDS


def data_files(workspace: Workspace) -> list[str]:
    if not workspace.data.is_dir():
        return []
    return sorted(p.name for p in workspace.data.glob("*.jsonl") if p.name not in NOT_TRAINING_DATA)


def dataset_summary(method: str, workspace: Workspace, name: str, samples: int = 3) -> str:
    if not name:
        return "Choose a dataset."
    try:
        module = method_module(method)
        rows = module.read_rows(rows_of.data_file(workspace, name))
    except (WorkbenchError, ValueError) as exc:
        return f"**`{name}` cannot be used for {method}:** {exc}"
    lines = [f"**{len(rows)} {module.ROWS}** in `{name}`, read as {method} needs them. First {min(samples, len(rows))}:"]
    worth = getattr(module, "WORTH_RUNNING", 0)
    if len(rows) < worth:
        lines.insert(0, f"**Only {len(rows)} {module.ROWS}:** under the {worth} that taught this method in the "
                        "benchmark; collect more votes (Annotate) before reading much into the result.")
    for row in rows[:samples]:
        text = row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)
        lines.append(f"- `{text[:300]}{'…' if len(text) > 300 else ''}`")
    return "\n".join(lines)
