"""``workbench models pull`` provisions SmolLM2-135M-Instruct offline as plain safetensors."""
from __future__ import annotations

import json
import os

from tests.conftest import cli, cli_json


def test_models_pull_gives_a_loadable_generating_model(pulled_base):
    shown, base = pulled_base
    assert shown["status"] == "succeeded", shown
    assert (base / "model.safetensors").exists() and not list(base.glob("*.bin"))
    manifest = json.loads((base / "manifest.json").read_text())
    assert manifest["name"] == "SmolLM2-135M-Instruct" and len(manifest["source_sha256"]) == 64
    assert manifest["parameters"] > 100_000_000

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    reply = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    assert "Paris" in reply

    env = {**os.environ, "WORKBENCH_HOME": str(base.parent.parent), "WORKBENCH_AUTO_PULL": "0"}
    listed = cli_json(env, "models", "list")
    assert listed[0]["name"] == "base" and listed[0]["kind"] == "base"
    again = json.loads(cli(env, "models", "pull", "--json").stdout)
    assert again["result"]["skipped"] is True
