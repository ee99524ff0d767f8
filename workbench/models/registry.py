"""What models the workspace holds: the base model and every trained model with its manifest."""
from __future__ import annotations

from typing import Any

from storage import Workspace, list_models


def resolve_base_model(base_model_setting: str, workspace: Workspace) -> str:
    """The base model to load: the configured folder / hub id, else ``models/base``."""
    return base_model_setting or str(workspace.base_model)


def list_workspace_models(workspace: Workspace) -> list[dict[str, Any]]:
    return list_models(workspace.models)
