"""The workbench: from raw documents to an aligned, evaluated language model.

The core package holds the domain logic; it never imports gradio, huey or ``jobs``.
"""
__version__ = "0.1.0"
