"""What models the workspace holds: the base model and every trained model with its manifest."""
from __future__ import annotations

from typing import Any

from storage import Workspace, list_models


def resolve_base_model(base_model_setting: str, workspace: Workspace) -> str:
    """The base model to load: the configured folder / hub id, else ``models/base``."""
    return base_model_setting or str(workspace.base_model)


def list_workspace_models(workspace: Workspace) -> list[dict[str, Any]]:
    return list_models(workspace.models)


def writes_answers(manifest: dict[str, Any]) -> bool:
    """Whether a model folder's manifest is a model that writes answers: any but a reward model
    (``kind`` reward-model), which scores them."""
    return "reward" not in f"{manifest.get('kind', '')} {manifest.get('method', '')}".lower()
