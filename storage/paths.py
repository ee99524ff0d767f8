"""Workspace layout: every path the workbench reads or writes, under one home folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace (``WORKBENCH_HOME``). Creating the object touches no disk."""

    home: Path

    def __post_init__(self):
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def documents(self) -> Path:
        return self.data / "documents"

    @property
    def index_file(self) -> Path:
        return self.data / "index.faiss"

    @property
    def metadata_file(self) -> Path:
        return self.data / "metadata.json"

    @property
    def corpus_db(self) -> Path:
        """The chunk store (SQLite): every chunk's text, metadata and vector, the sparse index."""
        return self.data / "corpus.db"

    @property
    def embeddings_file(self) -> Path:
        """Where an index saved before corpus.db kept its vectors (read once, to import them)."""
        return self.data / "embeddings.npy"

    @property
    def documents_file(self) -> Path:
        return self.data / "documents.json"

    @property
    def chat_turns_file(self) -> Path:
        """Chat turns sent to the Annotate tab."""
        return self.data / "chat_turns.jsonl"

    @property
    def train_file(self) -> Path:
        return self.data / "train.jsonl"

    @property
    def test_file(self) -> Path:
        return self.data / "test.jsonl"

    @property
    def feedback_file(self) -> Path:
        return self.data / "feedback.jsonl"

    @property
    def rlhf_file(self) -> Path:
        return self.data / "dataset_rlhf.jsonl"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def base_model(self) -> Path:
        return self.models / "base"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def workers(self) -> Path:
        """One small JSON file per live worker process (its heartbeat)."""
        return self.home / "workers"

    @property
    def audit_file(self) -> Path:
        """Who did what, when: launches, cancels, deletes, merges, imports, sign-ins, refusals."""
        return self.home / "audit.jsonl"

    @property
    def precision_file(self) -> Path:
        """How inference computes on each device this workspace ran on, decided once."""
        return self.home / "precision.json"

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    @property
    def queue_db(self) -> Path:
        return self.home / "queue.db"

    def ensure(self) -> "Workspace":
        for folder in (self.documents, self.models, self.runs, self.workers, self.cache):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def model_dir(self, name: str) -> Path:
        return self.models / safe_name(name)

    def contains(self, path: Path) -> bool:
        """True when ``path`` resolves inside the workspace (no escape through ``..`` or links)."""
        try:
            Path(path).resolve().relative_to(self.home)
            return True
        except ValueError:
            return False


def safe_name(name: str) -> str:
    """A single path component made of safe characters; raises on anything that could escape."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.strip())
    cleaned = cleaned.strip(".")
    if not cleaned:
        raise ValueError(f"invalid name: {name!r}")
    return cleaned
