"""Models loaded once and kept in this process (the web app) until unloaded, so a chat turn
does not pay the load; ``unload`` frees the memory (and the GPU) for training."""
from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from storage import Workspace
from workbench.models.loading import ModelSpec, load_for_inference, resolve


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    device: str
    loaded_at: float
    load_seconds: float


class ModelCache:
    def __init__(self):
        self._models: dict[ModelSpec, LoadedModel] = {}
        self._lock = threading.Lock()
        self._loading: dict[ModelSpec, threading.Lock] = {}

    def get(self, name: str, workspace: Workspace, base_setting: str = "") -> LoadedModel:
        spec = resolve(name, workspace, base_setting)
        with self._lock:
            if spec in self._models:
                return self._models[spec]
            loading = self._loading.setdefault(spec, threading.Lock())
        with loading:  # two users asking for the same model share one load; other models wait not
            if spec not in self._models:
                started = time.perf_counter()
                model, tokenizer, device = load_for_inference(spec)
                with self._lock:
                    self._models[spec] = LoadedModel(spec, model, tokenizer, device, time.time(),
                                                     time.perf_counter() - started)
            return self._models[spec]

    def loaded(self) -> list[LoadedModel]:
        return list(self._models.values())

    def unload(self, name: str | None = None) -> list[str]:
        """Drop one model by name, or all; returns the names dropped."""
        with self._lock:
            dropped = [s for s in self._models if name is None or s.name == name]
            for spec in dropped:
                del self._models[spec]
        if dropped:
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return [s.name for s in dropped]


CACHE = ModelCache()
