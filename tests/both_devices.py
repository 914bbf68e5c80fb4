"""The check, at collection, that every test that builds a DALI pipeline runs on both devices.

The rule: a test that builds a pipeline takes the ``device`` fixture (directly, or through a fixture that takes it)
and builds on that device, so that it is collected once for "cpu" and once for "gpu" (``pytest -m gpu``), as DALI's
own tests parametrize over ``['cpu', 'gpu']``. Helpers that build pipelines take the device as an argument.

What "builds a pipeline" means here is read from the test's source, not from running it: its body (nested
functions included) names one of :data:`BUILDERS` (``@pipeline_def``, ``Pipeline(...)``, our builders) or
calls ``.build()`` on something, or calls a function of the test suite (its own module or a helper module under
``tests/``, by a name the module imports or defines) that does, followed call by call. A test that builds only
inside another function of the package (the profiler's runs, the preview) or in a started process (the CLI,
torchrun, ``python -c``) is not seen: it chooses its device through that function's ``device`` argument or its
command line (``trainer_flags(device)``, ``--device``), which needs the ``device`` fixture anyway.

A test the check sees building must then
- take the ``device`` fixture as it is (not re-parametrize ``device`` with values of its own), or
- be marked ``gpu`` (it means something only on a GPU: the ``gpu_only`` fixture), or
- be marked ``one_device(reason)``: what it builds does not depend on the machine (a reader alone is a CPU
  pipeline everywhere; a GPU graph inspected unbuilt; a builder that refuses its arguments before any pipeline
  exists), and the reason says so.
A ``one_device`` mark on a test the check does not see building fails too, so that the marks stay true. Any of these
fails the collection (``--collect-only`` included), naming each test. The check judges each collected test by its
own definition, before ``-k`` and ``-m`` deselect any: a selection can neither trip it nor hide a problem.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
from pathlib import Path

import pytest

#: Names whose use builds a DALI pipeline: DALI's, and ours, which are named ``build_..._pipeline``
#: (``build_cutmix_pipeline``, ``build_imagenet_train_pipeline``, the profiler's ``build_stage_pipeline``, ...).
BUILDERS = re.compile(r"pipeline_def|Pipeline|build_\w+_pipeline")
#: Objects whose ``.build()`` is no pipeline's: the native operators' library (``dali_cutmix.native``).
NOT_PIPELINES = frozenset({"native"})


def in_folder(obj, folder: Path) -> bool:
    """Whether ``obj`` is a module, or a plain function, written in a file directly in ``folder``."""
    if inspect.ismodule(obj):
        source = getattr(obj, "__file__", None)
    else:
        source = obj.__code__.co_filename if inspect.isfunction(obj) else None
    return source is not None and Path(source).resolve().parent == folder


def builds(function, folder: Path, following=()) -> str | None:
    """How ``function`` (of the test suite) builds a DALI pipeline: the name it uses (``"pipeline_def"``,
    ``".build()"``, or ``"stage_pipeline -> pipeline_def"`` through a function of the suite), or None.
    ``folder``: the test suite's; ``following``: the functions whose calls led here (a function calling back into
    one of them adds nothing)."""
    how, called = direct_build(function, folder)
    if how is not None:
        return how
    for name, helper in called:
        if helper is not function and helper not in following:
            how = builds(helper, folder, following + (function,))
            if how is not None:
                return f"{name} -> {how}"
    return None


@functools.cache
def definitions(filename: str) -> dict:
    """The functions defined in the file ``filename`` (at any depth), by the line their code starts on (their
    first decorator's, as ``__code__.co_firstlineno``): ``{line: ast.FunctionDef}``. Each file is parsed once."""
    tree = ast.parse(Path(filename).read_text(), filename)
    return {min([node.lineno] + [d.lineno for d in node.decorator_list]): node for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


@functools.cache
def direct_build(function, folder: Path):
    """What :func:`builds` needs of ``function``'s own source: the builder it uses (or None), and the functions
    of the test suite (files in ``folder``) it calls by name (``helper(...)`` or ``module.helper(...)``), each with
    the name it is called by: ``(how, [(name, function)])``."""
    definition = definitions(function.__code__.co_filename)[function.__code__.co_firstlineno]
    used, called = [], []
    for node in ast.walk(ast.Module(body=definition.body, type_ignores=[])):
        if isinstance(node, ast.Name) and BUILDERS.fullmatch(node.id):
            used.append(node.id)
        if isinstance(node, ast.Attribute) and BUILDERS.fullmatch(node.attr):
            used.append(node.attr)
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr == "build":
            if not (isinstance(node.func.value, ast.Name) and node.func.value.id in NOT_PIPELINES):
                used.append(".build()")
        helper = name = None
        if isinstance(node.func, ast.Name):
            name = node.func.id
            helper = function.__globals__.get(name)
        elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            module = function.__globals__.get(node.func.value.id)
            if in_folder(module, folder):
                name = f"{node.func.value.id}.{node.func.attr}"
                helper = getattr(module, node.func.attr, None)
        if helper is not None and in_folder(helper, folder):
            called.append((name, helper))
    if used:
        return sorted(used, key=lambda how: how == ".build()")[0], []  # a builder's name says more than .build()
    return None, called


def problem(item, folder: Path) -> str | None:
    """What is wrong with the collected test ``item`` (a sentence naming it), or None; ``folder``: the test
    suite's."""
    function = getattr(item, "function", None)
    if function is None or not in_folder(function, folder):
        return None
    how = builds(function, folder)
    test = item.nodeid.split("[")[0]  # the test function, all its parameters
    one_device = item.get_closest_marker("one_device")
    if one_device is not None:
        if how is None:
            return f"{test} is marked one_device but builds no DALI pipeline that this check sees: drop the mark"
        if "device" in item.fixturenames:
            return f"{test} is marked one_device and takes `device`: drop one of them"
        if not (one_device.args or one_device.kwargs.get("reason")):
            return f"{test} is marked one_device without a reason: say why it is the same on every machine"
        return None
    if how is None or item.get_closest_marker("gpu") is not None:
        return None
    if "device" not in item.fixturenames:
        return (f"{test} builds a DALI pipeline ({how}) without the `device` fixture: take `device` and build on "
                f"it (or mark it one_device(reason) if what it builds is the same on every machine)")
    for mark in item.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs["argnames"]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if "device" in names:
            return f"{test} parametrizes `device` itself: take the `device` fixture as it is (cpu, then gpu)"
    return None


class BothDevices:
    """The pytest plugin: runs :func:`problem` on every collected test of the suite in ``folder``, before ``-k``
    and ``-m`` deselect any, and fails the collection with the list of problems."""

    def __init__(self, folder):
        self.folder = Path(folder).resolve()

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items):
        problems = list(dict.fromkeys(p for p in (problem(item, self.folder) for item in items) if p is not None))
        if problems:
            raise pytest.UsageError("tests that build a DALI pipeline must run on both devices "
                                    "(tests/both_devices.py):\n" + "\n".join(problems))
