"""The workbench: from raw documents to an aligned, evaluated language model.

The core package holds the domain logic; it never imports gradio, huey or ``jobs``.
"""
import os

__version__ = "0.1.0"

# transformers (5.2x) kernelizes every model it loads on a GPU with kernels fetched from the Hub
# whenever the ``kernels`` package is installed (bitsandbytes brings it). On a box without Hub
# access the load then fails ("Version 2 of 'kernels-community/rotary' is not available in the
# local cache"), and code fetched at load time is remote code, which a shared box does not run.
# Off unless the machine's owner sets USE_HUB_KERNELS=YES; every process the workbench starts
# inherits it.
os.environ.setdefault("USE_HUB_KERNELS", "NO")

# bitsandbytes and transformers' GGUF loader also fetch compiled kernels from the Hub on their own,
# which USE_HUB_KERNELS does not stop: refused in every process of the workbench (hub_kernels).
from workbench import hub_kernels  # noqa: E402

hub_kernels.guard()
