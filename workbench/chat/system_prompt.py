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
from workbench.limits import text_from_file
from workbench.versioned_text import Version, latest, save

SYSTEM_PROMPT_CHARS = 4_000  # about 1,000 tokens: a quarter of a 4k context window at most
SYSTEM_INPUT = "system"  # the role of the system prompt among a run's inputs (inputs/system.jsonl)
SystemPrompt = Version  # version 0: none written yet


def system_prompt_file(workspace: Workspace) -> Path:
    return workspace.data / "system_prompt.jsonl"


def current_system_prompt(workspace: Workspace) -> SystemPrompt:
    return latest(system_prompt_file(workspace))


def save_system_prompt(workspace: Workspace, text: str, author: str) -> SystemPrompt:
    """A new version, unless the text is the current one (then nothing is written). An empty
    text is a version too: no system prompt from then on."""
    return save(system_prompt_file(workspace), text, author, "the system prompt", SYSTEM_PROMPT_CHARS)


def system_input(workspace: Workspace) -> dict[str, Path]:
    """The system prompt file as a run's input, to be copied when the run is launched (empty
    when none was ever written)."""
    path = system_prompt_file(workspace)
    return {SYSTEM_INPUT: path} if path.is_file() else {}


def system_prompt_in(path: Path | None) -> SystemPrompt:
    """The latest version in ``path`` (a run's copy, or the workspace's file); none when absent."""
    return latest(path)


def trained_under(manifest: dict | None) -> str:
    """The system prompt a trained model was given in training (its manifest records it); a
    reward model scores answers framed the same way."""
    recorded = (manifest or {}).get("system_prompt") if isinstance(manifest, dict) else None
    return recorded.get("text", "") if isinstance(recorded, dict) and isinstance(recorded.get("text"), str) else ""


def system_prompt_from_file(path: Path) -> str:
    return text_from_file(path, "the system prompt", SYSTEM_PROMPT_CHARS)
