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
    weights: str = ""  # e.g. "int8 weights, bfloat16 activations"
    rerank_seconds: float | None = None  # what its last rerank of a question's chunks cost


class ModelCache:
    def __init__(self):
        self._models: dict[tuple[ModelSpec, str], LoadedModel] = {}
        self._lock = threading.Lock()
        self._loading: dict[tuple[ModelSpec, str], threading.Lock] = {}

    def get(self, name: str, workspace: Workspace, base_setting: str = "",
            decode_weights: str = "full") -> LoadedModel:
        """``decode_weights``: see ``load_for_inference`` (the chat passes the setting)."""
        key = (resolve(name, workspace, base_setting), decode_weights)
        with self._lock:
            if key in self._models:
                return self._models[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # two users asking for the same model share one load; other models wait not
            if key not in self._models:
                from workbench.models.int8_decode import describe_weights

                started = time.perf_counter()
                model, tokenizer, device = load_for_inference(key[0], decode_weights, workspace)
                with self._lock:
                    self._models[key] = LoadedModel(key[0], model, tokenizer, device, time.time(),
                                                    time.perf_counter() - started, describe_weights(model))
            return self._models[key]

    def loaded(self) -> list[LoadedModel]:
        return list(self._models.values())

    def unload(self, name: str | None = None) -> list[str]:
        """Drop one model by name, or all; returns the names dropped."""
        with self._lock:
            dropped = [key for key in self._models if name is None or key[0].name == name]
            for key in dropped:
                del self._models[key]
        if dropped:
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return [key[0].name for key in dropped]


CACHE = ModelCache()
