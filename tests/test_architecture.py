"""The package shows the pipeline: no import circle, no import from a later stage into an
earlier one (function-level imports included), and the measurement stage without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import fetalhc

PACKAGE = Path(fetalhc.__file__).parent
# io -> measure -> data -> model -> inference -> training -> study -> serve -> cli; `errors`
# is beneath every stage, `sample` is data shipped for tests and demos, `api` is the Python
# entry point over inference and training.
STAGES = {
    "errors": 0,
    "io": 1,
    "measure": 2,
    "data": 3,
    "sample": 3,
    "model": 4,
    "inference": 5,
    "training": 6,
    "study": 7,
    "serve": 8,
    "api": 9,
    "cli": 9,
    "__main__": 10,  # python -m fetalhc
}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> list[tuple[str, str]]:
    """(importing module, imported fetalhc module) for every import statement."""
    edges = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module}: relative import; use fetalhc.<stage>.<module>"
                if node.module and node.module.startswith("fetalhc"):
                    for alias in node.names:
                        target = f"{node.module}.{alias.name}"
                        edges.append((module, target if _stage(node.module) == "" else node.module))
            elif isinstance(node, ast.Import):
                edges += [(module, a.name) for a in node.names if a.name.startswith("fetalhc")]
    return edges


def test_every_module_belongs_to_a_stage():
    tops = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if not p.name.startswith("_")}
    tops -= {"py.typed"}
    assert tops <= set(STAGES), f"modules outside the stages: {sorted(tops - set(STAGES))}"


def test_no_import_from_a_later_stage():
    upward = []
    for module, target in _imports():
        src, dst = _stage(module), _stage(target)
        if src and dst and dst != "__version__" and STAGES[dst] > STAGES[src]:
            upward.append(f"{module} -> {target}")
    assert not upward, "\n".join(upward)


def test_no_import_circle_between_modules():
    graph: dict[str, set[str]] = {}
    modules = {m for m, _ in _imports()}
    for module, target in _imports():
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != module and target != "fetalhc":
            graph.setdefault(module, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen)):
                return True
        return False

    circles = [m for m in graph if reaches(m, m, set())]
    assert not circles, f"modules on an import circle: {sorted(circles)}"


def test_measurement_stage_imports_without_torch():
    code = (
        "import sys, importlib, pkgutil, fetalhc.measure as m\n"
        "for info in pkgutil.iter_modules(m.__path__):\n"
        "    importlib.import_module('fetalhc.measure.' + info.name)\n"
        "import fetalhc.io.images, fetalhc.training.config, fetalhc.study.grid\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
