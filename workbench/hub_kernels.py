"""No compiled code fetched from the Hub at run time, unless the machine's owner allows it.

The ``kernels`` package (transformers requires it) downloads compiled kernels from the Hugging
Face Hub and loads them into the process. Libraries call it on their own: bitsandbytes 0.50 asks
for ``kernels-community/quantization-bitsandbytes`` when it is imported on a CPU with AVX512-BF16
(and peft imports bitsandbytes, so every process that imports peft does), and transformers' GGUF
loader asks for ``ggml-org/ggml-quantization`` and, for the architectures of its newer GGUF path,
layer kernels (``ggml-org/ggml-norm``...). ``USE_HUB_KERNELS=NO`` stops none of them. On a shared
box that is code nobody chose, fetched into the web and worker processes.

``guard()`` makes ``kernels``' Hub resolvers refuse, with a message that names the setting; every
way in (``get_kernel``, ``get_locked_kernel``, a layer or function repository's ``load``) goes
through one of them, and a name copied before the guard still reaches the refusal. The callers
above catch the refusal and keep their own code paths. With ``USE_HUB_KERNELS=YES`` (the owner's
choice) nothing is changed.
"""
from __future__ import annotations

import importlib.abc
import os
import sys

FETCHERS = ("get_kernel", "get_locked_kernel")  # also refused by name, for a kernels without the resolvers below
RESOLVERS = "kernels._internals.resolver"  # its classes named *Hub*Resolver fetch from the Hub or its cache


class HubKernelRefused(RuntimeError):
    """A library asked for a compiled kernel from the Hub in a workbench process."""


def allowed() -> bool:
    """The machine's owner allows Hub kernels (``USE_HUB_KERNELS`` set to yes)."""
    # read as transformers reads the same variable (``is_env_variable_true``), so one setting means
    # the same to its kernelizing and to this guard
    return os.environ.get("USE_HUB_KERNELS", "").lower() in ("true", "1", "y", "yes", "on")


def _refusal(repo_id: object) -> HubKernelRefused:
    return HubKernelRefused(f"Hub kernel {repo_id!r} refused: the workbench loads no compiled code from the Hub "
                            "(set USE_HUB_KERNELS=YES to allow it)")


def _refused_fetcher(repo_id: str, *args, **kwargs):
    raise _refusal(repo_id)


def _refused_resolve(self, *args, kernel=None, **kwargs):
    raise _refusal(getattr(kernel, "repo_id", kernel))


def _wrap(module) -> None:
    """Refuse in ``kernels`` (the package, just run or already there) and in its resolvers."""
    for name in FETCHERS:
        if hasattr(module, name):
            setattr(module, name, _refused_fetcher)
    resolvers = sys.modules.get(RESOLVERS)
    for name, cls in vars(resolvers).items() if resolvers else ():
        if isinstance(cls, type) and "Hub" in name and name.endswith("Resolver") and hasattr(cls, "resolve"):
            cls.resolve = _refused_resolve


class _KernelsFinder(importlib.abc.MetaPathFinder):
    """Finds ``kernels`` as the other finders do, and refuses its fetchers once it has run."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "kernels" or allowed():
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module) -> None:
            run(module)
            _wrap(module)

        spec.loader.exec_module = exec_module
        return spec


def guard() -> None:
    """Refuse Hub kernels in this process (every process the workbench starts imports it)."""
    if allowed():
        return
    if "kernels" in sys.modules:
        _wrap(sys.modules["kernels"])
    if not any(isinstance(finder, _KernelsFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KernelsFinder())
