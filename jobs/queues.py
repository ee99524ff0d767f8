"""Huey instances built from settings: one queue for GPU work (one job at a time per GPU) and one
for short CPU work (indexing), on SQLite (``queue.db``) by default or Redis when configured."""
from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import urlparse

from huey import PriorityRedisHuey, SqliteHuey
from huey.api import Huey

from jobs.serializer import JsonSerializer
from storage.atomic import open_to_umask
from workbench.kinds import KINDS
from workbench.settings import Settings

QUEUES = ("cpu", "gpu")
_cache: dict[tuple[str, str, str], Huey] = {}
_lock = threading.Lock()


def build_huey(settings: Settings, queue: str) -> Huey:
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; known: {', '.join(QUEUES)}")
    url = settings.queue_url
    name = f"{settings.queue_name}-{queue}"
    scheme = urlparse(url).scheme
    common = dict(results=False, serializer=JsonSerializer(), utc=True)
    if scheme in ("redis", "rediss", "unix"):
        huey = PriorityRedisHuey(name, url=url, **common)
    elif scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else urlparse(url).path
        settings.workspace.home.mkdir(parents=True, exist_ok=True)
        created = not Path(path).exists()
        huey = SqliteHuey(name, filename=path, timeout=30, **common)
        if created:
            open_to_umask(Path(path))
    else:
        raise ValueError(f"WORKBENCH_QUEUE={redact(url)!r}: use redis://host:port/db or leave it empty for SQLite")
    _register_tasks(huey, settings, queue)
    return huey


def redact(url: str) -> str:
    """The URL with its password masked, for any message that shows it."""
    parts = urlparse(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:" if parts.username else ":"
    return parts._replace(netloc=f"{user}***@{host}").geturl()


def get_huey(settings: Settings, queue: str) -> Huey:
    key = (settings.queue_url, settings.queue_name, queue)
    with _lock:
        if key not in _cache:
            _cache[key] = build_huey(settings, queue)
        return _cache[key]


def _register_tasks(huey: Huey, settings: Settings, queue: str) -> None:
    from jobs.runner import execute

    huey.workbench_tasks = {}
    for kind in KINDS.values():
        if kind.queue != queue:
            continue

        def task(run_id: str, _settings=settings) -> None:
            execute(_settings, run_id)

        huey.workbench_tasks[kind.name] = huey.task(name=f"run:{kind.name}")(task)


def task_ids_on(huey: Huey) -> set[str]:
    """The ids of the tasks a queue holds: waiting, and scheduled for later."""
    return {task.id for task in huey.pending()} | {task.id for task in huey.scheduled()}


def task_for(huey: Huey, kind: str):
    try:
        return huey.workbench_tasks[kind]
    except KeyError:
        raise ValueError(f"job kind {kind!r} does not run on queue {huey.name!r}") from None
