"""Import rules of DESIGN.md: core and jobs never load gradio; storage imports nothing of ours."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_core_and_jobs_do_not_import_gradio():
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for pkg in ("workbench", "jobs", "storage") for p in (ROOT / pkg).rglob("*.py")
        if "ui" not in p.relative_to(ROOT).parts and p.name != "__main__.py")
    code = (
        "import sys, importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(n for n in sys.modules if n == 'gradio' or n.startswith('gradio.'))\n"
        "print('LOADED', len(sys.modules), bad[:3])\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LOADED" in proc.stdout


def test_core_does_not_import_huey_or_jobs():
    for path in (ROOT / "workbench").rglob("*.py"):
        if {"ui", "cli"} & set(path.relative_to(ROOT / "workbench").parts):
            continue  # the UI and the CLI are entry points, like app.py
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                assert top not in {"gradio", "huey", "jobs"}, f"{path} imports {name}"


def test_storage_imports_nothing_of_the_project():
    for path in (ROOT / "storage").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in {"workbench", "jobs", "app", "gradio", "huey", "torch"}, \
                    f"{path} imports {name}"


def test_each_cli_module_imports_on_its_own():
    """No import cycle in the CLI package: every group module loads first in a fresh interpreter."""
    names = sorted(p.stem for p in (ROOT / "workbench" / "cli").glob("*.py") if p.stem != "__main__")
    code = "import importlib, sys\nimportlib.import_module(sys.argv[1])\n"
    for name in names:
        module = "workbench.cli" if name == "__init__" else f"workbench.cli.{name}"
        proc = subprocess.run([sys.executable, "-c", code, module], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, f"{module}: {proc.stderr[-2000:]}"


def test_the_cli_parses_without_loading_the_heavy_libraries():
    """Building every command's parser (what each `workbench ...` call does first) loads none of
    torch, transformers, FAISS or gradio: a worker machine needs no FAISS to train, and `--help`
    answers at once."""
    code = ("import sys\nfrom workbench.cli import build_parser\nbuild_parser()\n"
            "print(sorted(n for n in ('torch', 'transformers', 'faiss', 'gradio') if n in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _project_imports(path: Path) -> set[str]:
    """The ``workbench.*`` modules a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found |= {name for name in names if name.split(".")[0] == "workbench"}
    return found


def test_the_index_stands_below_the_corpus_and_the_models():
    """The index (FAISS, the chunk store, search) is used by the corpus, chat and evaluation; it
    leans on none of them, and the machine probes under everything lean on nothing."""
    above = ("workbench.corpus", "workbench.models", "workbench.chat", "workbench.train", "workbench.evaluate",
             "workbench.feedback", "workbench.ui", "workbench.cli")
    for path in (ROOT / "workbench" / "index").rglob("*.py"):
        bad = sorted(name for name in _project_imports(path) if name.startswith(above))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
    assert _project_imports(ROOT / "workbench" / "runtime.py") == set()


def test_every_job_is_handed_its_context_and_reads_no_environment():
    """Each kind's ``run(config, context)`` takes a ``JobContext`` (settings, run, reporter, GPUs);
    no job module rebuilds settings or reads a variable from the environment."""
    import inspect

    from workbench.job_context import JobContext
    from workbench.kinds import KINDS

    for kind in KINDS.values():
        config_cls, run = kind.load()
        params = list(inspect.signature(run).parameters.values())
        assert [p.name for p in params] == ["config", "context"], (kind.name, params)
        assert inspect.get_annotations(run, eval_str=True)["context"] is JobContext, kind.name
        path = ROOT / (kind.module.replace(".", "/") + ".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"from_env", "environ", "getenv"}, f"{path.relative_to(ROOT)} reads {node.attr}"
