"""The house has floors: models <- evaluation <- musicrl <- app, with the CLI (musicrl.cli, musicrl.commands)
the one top floor. No import may point up — not even one inside a function or under TYPE_CHECKING.

Every ``import`` statement of every module of the four packages is read from its source (an AST scan:
function bodies included, nothing is run), plus ``importlib.import_module("...")`` calls with a literal
name; each target is mapped to its floor. A second, runtime check imports the lower packages in a fresh
interpreter and looks at what they pulled into ``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "evaluation", "musicrl", "app")
FLOORS = {"models": 1, "evaluation": 2, "musicrl": 3, "app": 4, "cli": 5}
CLI = ("musicrl.cli", "musicrl.commands")
GRADIO_FLOOR = "app"  # the only floor that may import gradio: importing models never pulls it in


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def floor_of(module: str) -> str | None:
    """"models" / "evaluation" / "musicrl" / "app" / "cli" for our modules, None for anything else."""
    if module == CLI[0] or module.startswith(CLI[0] + ".") or module == CLI[1] or module.startswith(CLI[1] + "."):
        return "cli"
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names if floor_of(target)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value))
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                found.append((node.lineno, str(arg.values[0].value).rstrip(".")))
    return found


def upward_imports(root: Path = ROOT) -> list[str]:
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            here = floor_of(module_name(path, root))
            for line, target in imports_of(path, root):
                there = floor_of(target)
                where = f"{path.relative_to(root)}:{line} imports {target}"
                if there is not None and FLOORS[there] > FLOORS[here]:
                    problems.append(f"{where} ({here} is below {there})")
                if target.split(".")[0] == "gradio" and here != GRADIO_FLOOR:
                    problems.append(f"{where} (only app/ may import gradio)")
    return problems


def test_no_import_points_up_the_floors():
    assert upward_imports() == []


def test_the_scan_sees_imports_inside_functions_relative_ones_and_import_module(tmp_path):
    """The checker itself, on a planted module: each upward import it must report is reported."""
    fake = tmp_path / "models"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "bad.py").write_text(
        "import torch\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from app.store import Store\n"
        "def f():\n    import musicrl.losses\n    from ..evaluation import suite\n"
        "    import importlib\n    importlib.import_module('app.ui')\n    import gradio\n"
    )
    for package in PACKAGES[1:]:
        (tmp_path / package).mkdir()
    found = upward_imports(tmp_path)
    assert sorted(p.split(" imports ")[1].split(" (")[0] for p in found) == [
        "app.store", "app.store.Store", "app.ui", "evaluation", "evaluation.suite", "gradio", "musicrl.losses"]


@pytest.mark.parametrize(
    ("imports", "forbidden"),
    [
        ("models, models.generator, models.registry, models.checkpoint, models.hf_musicgen, models.debug",
         ("gradio", "musicrl", "app", "evaluation")),
        ("evaluation, evaluation.suite, evaluation.ratings, evaluation.report, evaluation.judges",
         ("gradio", "musicrl", "app")),
        ("musicrl.rewards, musicrl.rollouts, musicrl.losses, musicrl.train_state", ("gradio", "app")),
    ],
)
def test_importing_a_lower_floor_pulls_in_nothing_above_it(imports, forbidden):
    code = (f"import sys, {imports};"
            f"print(','.join(m for m in {forbidden!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"{imports} pulled in: {out.stdout.strip()}"
