"""The house rules, checked on the source: one import name, imports that go one way, no cycles, no private names
across modules, the mixing options checked in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Folder of the repository -> the package it installs as (pyproject.toml's package-dir).
FOLDERS = {"dali_cutmix": "dali_cutmix", "pipelines": "dali_cutmix.pipelines", "train": "dali_cutmix.train",
           "profiler": "dali_cutmix.profiler", "cli": "dali_cutmix.cli"}
#: The layers, lowest first: a module may import its own layer and the ones below it.
LAYERS = ("core", "pipelines", "train", "profiler", "cli")


def modules():
    """``{module name: path}`` for every Python file the distribution installs."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package] + parts)] = path
    return found


MODULES = modules()


def layer(module: str) -> str:
    for name in ("pipelines", "train", "profiler", "cli"):
        if module == f"dali_cutmix.{name}" or module.startswith(f"dali_cutmix.{name}."):
            return name
    return "core"


def imports(module: str, path: Path):
    """``(imported module, names)`` for every import in ``module``, function-local ones included; relative
    imports resolved. ``names`` are the names a ``from`` import takes (empty for ``import x``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = tuple(a.name for a in node.names)
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            yield base, tuple(n for n in names if f"{base}.{n}" not in MODULES)
            for sub in submodules:
                yield sub, ()


def own_imports():
    """``{module: {imported project module: names}}``."""
    graph = {}
    for module, path in MODULES.items():
        edges = {}
        for target, names in imports(module, path):
            if target in MODULES:
                edges.setdefault(target, set()).update(names)
        graph[module] = edges
    return graph


GRAPH = own_imports()


def test_the_repository_installs_one_import_name():
    text = (ROOT / "pyproject.toml").read_text()
    mapped = dict(re.findall(r'^"?([\w.]+)"? = "(\w+)"$', text, flags=re.M))
    assert mapped == {package: folder for folder, package in FOLDERS.items()}
    assert all(package.split(".")[0] == "dali_cutmix" for package in mapped)


def test_no_old_top_level_names_are_imported():
    for module, path in MODULES.items():
        for target, _ in imports(module, path):
            assert target.split(".")[0] not in ("pipelines", "train", "profiler", "cli"), f"{module}: {target}"


def test_imports_go_one_way():
    """core <- pipelines <- train <- profiler <- cli: nothing imports a layer above its own."""
    for module, edges in GRAPH.items():
        for target in edges:
            assert LAYERS.index(layer(target)) <= LAYERS.index(layer(module)), \
                f"{module} ({layer(module)}) imports {target} ({layer(target)})"


def test_the_core_does_not_import_train_or_pipelines():
    core = [m for m in GRAPH if layer(m) == "core"]
    assert "dali_cutmix.stage" in core and "dali_cutmix.pipeline" in core
    for module in core:
        assert all(layer(t) == "core" for t in GRAPH[module]), module


def test_no_import_cycles():
    """Between modules (a package's ``__init__`` counts as a module), function-local imports included."""
    state = {}

    def visit(module, stack):
        state[module] = "open"
        for target in GRAPH[module]:
            if target == module or target == module.rpartition(".")[0]:
                continue  # a module importing its own package's __init__ (its parent) is how Python works
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in GRAPH:
        if module not in state:
            visit(module, [module])


def test_no_private_name_is_imported_from_another_module():
    for module, edges in GRAPH.items():
        for target, names in edges.items():
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{module} imports {private} from {target}"


def test_each_mixing_option_is_range_checked_once():
    """The messages that check a mixing option's range exist in dali_cutmix/options.py only."""
    # an option's name (or flag) starting a message: "mode must", "{mode} must", "--mix-mode must", not "scan mode"
    checks = re.compile(r"(?<![A-Za-z] )\b(cutmix_alpha|mixup_alpha|switch_prob|label_smoothing|cutmix_minmax|"
                        r"minmax|prob|mode|mix-mode|alpha)\W{0,4} must ")
    sources = [p for p in MODULES.values()] + [ROOT / "dali_cutmix" / "native" / "mix_ops.cc"]
    places = {str(p.relative_to(ROOT)) for p in sources if checks.search(p.read_text())}
    assert places == {"dali_cutmix/options.py"}
