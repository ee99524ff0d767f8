"""The workspace's system prompt: what every model is told before each question, in chat, in
the answers of A/B pairs, in evaluation and in training alike, so a model is trained in the
conversation it will answer in. A trainer writes it (the Chat tab, or ``workbench system-prompt
FILE``).

Each save is a new version appended to ``data/system_prompt.jsonl`` (the last line is the current
one; the history says which prompt an older answer was given under). A training run copies the
current text into its inputs when it is launched: a resume, or a change made meanwhile, trains
on the text it started with.
"""
from __future__ import annotations

from pathlib import Path

from storage import Workspace
from workbench.versioned_text import Version, VersionedText, latest

SYSTEM_PROMPT_CHARS = 4_000  # about 1,000 tokens: a quarter of a 4k context window at most
SYSTEM_INPUT = "system"  # the role of the system prompt among a run's inputs (inputs/system.jsonl)
SystemPrompt = Version  # version 0: none written yet (an empty text of a later version: cleared)
SYSTEM_PROMPT = VersionedText("system_prompt.jsonl", "the system prompt", SYSTEM_PROMPT_CHARS)

system_prompt_file = SYSTEM_PROMPT.path
current_system_prompt = SYSTEM_PROMPT.current
save_system_prompt = SYSTEM_PROMPT.save
system_prompt_from_file = SYSTEM_PROMPT.from_file


def system_input(workspace: Workspace) -> dict[str, Path]:
    """The system prompt file as a run's input, to be copied when the run is launched (empty
    when none was ever written)."""
    path = system_prompt_file(workspace)
    return {SYSTEM_INPUT: path} if path.is_file() else {}


def launched_with(run_folder: Path) -> SystemPrompt:
    """The system prompt a run was launched with: the version in its copy of the file."""
    return latest(Path(run_folder) / "inputs" / f"{SYSTEM_INPUT}.jsonl")


def trained_under(manifest: dict | None) -> str:
    """The system prompt a trained model was given in training (its manifest records it); a
    reward model scores answers framed the same way."""
    recorded = (manifest or {}).get("system_prompt") if isinstance(manifest, dict) else None
    return recorded.get("text", "") if isinstance(recorded, dict) and isinstance(recorded.get("text"), str) else ""
