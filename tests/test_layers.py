"""The house rules, checked on the source: one import name, a source tree that imports as the wheel does, rooms
that import one way, unique module names, no cycles, no private names across modules, the mixing options checked
in one place, test modules that share code through helper modules, not through each other."""

from __future__ import annotations

import ast
import os
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Folder of the repository -> the package it installs as. ``dali_cutmix/<room>`` is a link to ``<room>/``.
FOLDERS = {"dali_cutmix": "dali_cutmix", "pipelines": "dali_cutmix.pipelines", "train": "dali_cutmix.train",
           "profiler": "dali_cutmix.profiler", "cli": "dali_cutmix.cli"}
ROOMS_LINKED = ("pipelines", "train", "profiler", "cli")
#: The rooms, lowest first: a module may import its own room and the ones below it.
#: base: the error type and the small helpers; core: the plugin a DALI user imports.
ROOMS = ("base", "core", "pipelines", "train", "profiler", "cli")
#: The plugin: what a DALI user puts into their own pipeline (the top level of dali_cutmix/).
PLUGIN = {"__init__", "options", "option_errors", "stage", "native", "builder", "folder_reader", "shard_reader",
          "imagecheck", "loader", "loss", "errors", "helpers", "augment", "augment_options", "dynamic",
          "dynamic_input", "dynamic_nodes"}


def modules():
    """``{module name: path}`` for every Python file the distribution installs (the rooms read where they are,
    not through dali_cutmix/'s links)."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            if folder == "dali_cutmix" and path.relative_to(ROOT / folder).parts[0] in ROOMS_LINKED:
                continue
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package] + parts)] = path
    return found


MODULES = modules()


def room(module: str) -> str:
    for name in ROOMS_LINKED:
        if module == f"dali_cutmix.{name}" or module.startswith(f"dali_cutmix.{name}."):
            return name
    if module == "dali_cutmix.errors" or module.startswith("dali_cutmix.helpers"):
        return "base"
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
    """pyproject.toml lists the packages, each under dali_cutmix, and maps no folder to another name (the links do)."""
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(dali_cutmix[\w.]*)"', text[text.index("[tool.setuptools]"):]))
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert listed == packages
    assert "package-dir" not in text


def test_each_room_is_linked_into_dali_cutmix():
    """A source checkout imports dali_cutmix.pipelines (and the others) from the same files as the wheel."""
    for name in ROOMS_LINKED:
        link = ROOT / "dali_cutmix" / name
        assert link.is_symlink() and os.readlink(link) == f"../{name}", link
        assert link.resolve() == (ROOT / name).resolve()


def test_the_top_level_of_dali_cutmix_is_the_plugin():
    names = {p.stem for p in (ROOT / "dali_cutmix").iterdir()
             if p.name not in ROOMS_LINKED and (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert names == PLUGIN


def test_module_names_are_unique():
    """No two modules share a name (a CLI module named after its command aside), and no module is named like a
    package beside it (no ``pipeline`` beside ``pipelines``)."""
    commands = {p.stem for p in (ROOT / "cli").glob("*.py")} - {"__init__", "__main__", "mixing", "params"}
    names = Counter(m.rpartition(".")[2] for m, p in MODULES.items()
                    if p.name != "__init__.py" and not (room(m) == "cli" and p.stem in commands))
    assert [n for n, c in names.items() if c > 1] == []
    packages = {m.rpartition(".")[2] for m, p in MODULES.items() if p.name == "__init__.py"}
    for name in names:
        assert name not in packages and name.rstrip("s") not in packages and name + "s" not in packages, name


def test_no_old_top_level_names_are_imported():
    for module, path in MODULES.items():
        for target, _ in imports(module, path):
            assert target.split(".")[0] not in ("pipelines", "train", "profiler", "cli"), f"{module}: {target}"


#: What each room imports of the others (the rooms below it that it needs; a change here is a design change).
ROOM_IMPORTS = {
    "base": set(),
    "core": {"base"},
    "pipelines": {"base", "core"},
    "train": {"base", "core", "pipelines"},
    "profiler": {"base", "core", "pipelines", "train"},
    "cli": {"base", "core", "pipelines", "train", "profiler"},
}


def test_rooms_import_one_way():
    """base <- core <- pipelines <- train <- profiler <- cli: nothing imports a room above its own, and each room
    imports just the rooms listed in :data:`ROOM_IMPORTS`."""
    seen = {name: set() for name in ROOMS}
    for module, edges in GRAPH.items():
        for target in edges:
            assert ROOMS.index(room(target)) <= ROOMS.index(room(module)), \
                f"{module} ({room(module)}) imports {target} ({room(target)})"
            if room(target) != room(module):
                seen[room(module)].add(room(target))
    assert seen == ROOM_IMPORTS


def test_the_plugin_does_not_import_the_tools():
    core = [m for m in GRAPH if room(m) == "core"]
    assert "dali_cutmix.stage" in core and "dali_cutmix.builder" in core
    for module in core:
        assert all(room(t) in ("base", "core") for t in GRAPH[module]), module


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


def test_test_modules_import_helper_modules_never_each_other():
    """Shared test code lives in helper modules of tests/ (reference.py, stage_pipelines.py, cli_runs.py, ...):
    a test module imports none of the others (nor a private name of a helper), function-local imports included."""
    tests = ROOT / "tests"
    found = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                taken = [(alias.name, ()) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                taken = [(node.module, tuple(alias.name for alias in node.names))]
            else:
                continue
            for module, names in taken:
                if module.startswith("test_") and (tests / f"{module}.py").exists():
                    found.append(f"{path.name} imports {module}")
                elif (tests / f"{module}.py").exists():
                    found += [f"{path.name} imports {n} from {module}" for n in names if n.startswith("_")]
    assert found == []
