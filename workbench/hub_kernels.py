"""No compiled code fetched from the Hub at run time, unless the machine's owner allows it.

The ``kernels`` package (transformers requires it) downloads compiled kernels from the Hugging
Face Hub and loads them into the process. Libraries call it on their own: bitsandbytes 0.50 asks
for ``kernels-community/quantization-bitsandbytes`` when it is imported on a CPU with AVX512-BF16
(and peft imports bitsandbytes, so every process that imports peft does), and transformers' GGUF
loader asks for ``ggml-org/ggml-quantization``. ``USE_HUB_KERNELS=NO`` stops neither. On a
shared box that is code nobody chose, fetched into the web and worker processes.

``guard()`` wraps ``kernels``' two fetchers, as the package is imported, to refuse with a message
that names the setting; the callers above catch the refusal and keep their own code paths. With
``USE_HUB_KERNELS=YES`` (the owner's choice) nothing is wrapped.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

FETCHERS = ("get_kernel", "get_locked_kernel")


class HubKernelRefused(RuntimeError):
    pass


def allowed() -> bool:
    return os.environ.get("USE_HUB_KERNELS", "").upper() in {"1", "ON", "YES", "TRUE"}


def _refuse(name: str):
    def refused(repo_id: str, *args, **kwargs):
        raise HubKernelRefused(f"{name}({repo_id!r}) refused: the workbench loads no compiled code from the Hub "
                               "(set USE_HUB_KERNELS=YES to allow it)")
    refused.__name__ = name
    return refused


def _wrap(module) -> None:
    for name in FETCHERS:
        if hasattr(module, name):
            setattr(module, name, _refuse(name))


class _KernelsFinder(importlib.abc.MetaPathFinder):
    """Finds ``kernels`` as the path finder does and wraps its fetchers once it has run."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "kernels" or allowed():
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module) -> None:
            run(module)
            _wrap(module)

        spec.loader.exec_module = exec_module
        return spec


def guard() -> None:
    """Wrap ``kernels``' fetchers in this process (every process the workbench starts imports it)."""
    if allowed():
        return
    if "kernels" in sys.modules:
        _wrap(sys.modules["kernels"])
    elif not any(isinstance(finder, _KernelsFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KernelsFinder())
