"""What the Train tab shows beside the form: what each method needs, which data files exist, and a
dataset's row count and first rows read the way the method will read them."""
from __future__ import annotations

import json

from storage import Workspace
from workbench.errors import WorkbenchError
from workbench.train import data as rows_of

NEEDS = {
    "sft": "SFT rows: chat `messages`, `prompt`/`completion` or Alpaca `instruction`/`input`/`output` "
           "(`data/train.jsonl`; `data/test.jsonl` is the held-out set when present).",
    "reward": "Preference pairs `prompt`/`chosen`/`rejected` (`data/dataset_rlhf.jsonl`, written by "
              "Annotate → Merge); held-out pairs from `dataset_rlhf_test.jsonl` or a split.",
    "dpo": "Preference pairs `prompt`/`chosen`/`rejected` (`data/dataset_rlhf.jsonl`); the start model "
           "is the reference.",
    "grpo": "Prompts (a preference file or prompt-only rows) and a reward model (train one with "
            "*reward* first) and/or built-in rewards.",
}
NEEDS["ppo"] = ("Prompts (a preference file or prompt-only rows) and a trained reward model, which also "
                "initialises the value model.")
READERS = {"ppo": rows_of.prompts, "sft": rows_of.sft_rows, "reward": rows_of.preference_pairs, "dpo": rows_of.preference_pairs,
           "grpo": rows_of.prompts}
NOT_TRAINING_DATA = {"feedback.jsonl", "chat_turns.jsonl", "pairs.jsonl"}


def data_files(workspace: Workspace) -> list[str]:
    if not workspace.data.is_dir():
        return []
    return sorted(p.name for p in workspace.data.glob("*.jsonl") if p.name not in NOT_TRAINING_DATA)


def dataset_summary(method: str, workspace: Workspace, name: str, samples: int = 3) -> str:
    if not name:
        return "Choose a dataset."
    try:
        rows = READERS[method](rows_of.data_file(workspace, name))
    except (WorkbenchError, ValueError) as exc:
        return f"**`{name}` cannot be used for {method}:** {exc}"
    noun = {"sft": "rows", "grpo": "prompts"}.get(method, "pairs")
    lines = [f"**{len(rows)} {noun}** in `{name}`, read as {method} needs them. First {min(samples, len(rows))}:"]
    for row in rows[:samples]:
        text = row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)
        lines.append(f"- `{text[:300]}{'…' if len(text) > 300 else ''}`")
    return "\n".join(lines)
