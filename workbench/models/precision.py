"""How this workspace computes on this machine's device, decided once and written down.

On a CPU the compute dtype is bf16 only where the CPU has native bf16 and a timing shows it
pays, and int8 weights are used for one-stream decoding (``decode_weights=auto``) only where a
timing shows they pay. A timing made in every process decided differently on a busy and a quiet
machine: the same evaluation gave test_loss 0.9478 once and 0.9345 three times. So the first
process to need a decision probes and records it in ``precision.json`` under the device's
name; every later process of the workspace on that device reads it, and reports name it.
Delete the file (or the device's entry) to decide again, e.g. after moving to a new machine
of the same name. GPUs are not timed: bf16 where supported, else fp16.
"""
from __future__ import annotations

import functools
import platform
from dataclasses import asdict, dataclass
from typing import Any

from storage import Workspace, read_json, write_json_atomic
from storage.runs import now_iso

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Precision:
    device: str  # "cpu" or "cuda"
    dtype: str  # one of DTYPES: the compute dtype of inference
    int8_decode: bool  # int8 weights pay for one-stream decoding (CPU with native bf16 only)
    device_name: str  # the device it was decided for
    decided: str  # when, and by which process's probe

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name() -> str:
    """The device inference runs on, named so that two machines of one kind share a decision."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    from workbench.runtime import cpu_has_native_bf16

    return f"cpu:{_cpu_name()}" + (" (native bf16)" if cpu_has_native_bf16() else "")


def _probe(name: str) -> Precision:
    import torch

    if name.startswith("cuda:"):
        from workbench.runtime import cuda_has_native_bf16

        dtype = "bfloat16" if cuda_has_native_bf16() else "float16"
        return Precision("cuda", dtype, False, name, now_iso())
    from workbench.models.generation import cpu_bf16_pays
    from workbench.models.int8_decode import int8_pays

    # the timings draw random tensors and weights: on the process's generator they would shift a
    # seeded training run's LoRA init and dropout, so the first run of a workspace (which probes)
    # would train apart from any later one of the same seed (which reads the decision)
    with torch.random.fork_rng(devices=[]):
        dtype = "bfloat16" if cpu_bf16_pays() else "float32"
        int8 = int8_pays(dtype)
    return Precision("cpu", dtype, int8, name, now_iso())


def recorded(workspace: Workspace, name: str | None = None) -> Precision | None:
    """The decision written for this device (or ``name``), or None; reads only."""
    entry = ((read_json(workspace.precision_file, default={}) or {}).get("devices") or {}).get(name or device_name())
    if not isinstance(entry, dict) or entry.get("dtype") not in DTYPES:
        return None
    try:
        return Precision(**{k: entry[k] for k in Precision.__dataclass_fields__})
    except (KeyError, TypeError):
        return None


def recorded_all(workspace: Workspace) -> list[Precision]:
    """Every device's decision in the workspace (for Monitor); reads only, imports no torch."""
    devices = (read_json(workspace.precision_file, default={}) or {}).get("devices") or {}
    return [found for found in (recorded(workspace, name) for name in devices) if found is not None]


@functools.lru_cache(maxsize=8)
def _decided(home: str, name: str) -> Precision:
    from storage.jsonl import lock_for

    workspace = Workspace(home)
    with lock_for(workspace.precision_file):
        found = recorded(workspace, name)
        if found is not None:
            return found
        decision = _probe(name)
        data = read_json(workspace.precision_file, default={}) or {}
        devices = data.get("devices") if isinstance(data.get("devices"), dict) else {}
        devices[name] = decision.to_dict()
        workspace.home.mkdir(parents=True, exist_ok=True)
        write_json_atomic(workspace.precision_file, {"devices": devices})
        return decision


def decide(workspace: Workspace) -> Precision:
    """This device's decision for the workspace: the recorded one, else probed now and recorded."""
    return _decided(str(workspace.home), device_name())
