"""Notes of DALI pipeline builds, in the test process and in every process a test starts: while
:data:`LOG_VARIABLE` names a file, each pipeline's first ``nvidia.dali.Pipeline.build()`` appends one line to it,
``<pid> <device_id>`` (``None`` for a CPU-only pipeline). Imports neither pytest nor DALI (a started process loads
it from its ``sitecustomize`` before anything else); ``tests/pipeline_builds.py`` is the check built on it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: The environment variable naming the file a running test's pipeline builds are noted in.
LOG_VARIABLE = "DALI_CUTMIX_TEST_BUILD_LOG"

SITECUSTOMIZE = """\
# Written by the test suite (tests/build_notes.py) for the processes a test starts: notes their DALI pipeline builds.
import importlib.util as _util
import os as _os

if _os.environ.get({variable!r}):
    _spec = _util.spec_from_file_location("dali_cutmix_test_build_notes", {path!r})
    _module = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.watch_imports()
"""


def sitecustomize() -> str:
    """The text of a ``sitecustomize.py`` that makes a started Python process note its builds (when
    :data:`LOG_VARIABLE` is set in its environment; otherwise it does nothing)."""
    return SITECUSTOMIZE.format(variable=LOG_VARIABLE, path=str(Path(__file__).resolve()))


def note_build(pipe) -> None:
    """Append ``pipe``'s ``device_id`` to the file :data:`LOG_VARIABLE` names (nothing when it names none)."""
    log = os.environ.get(LOG_VARIABLE)
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {pipe.device_id}\n")


def wrap_build(pipeline_class) -> None:
    """Make ``pipeline_class.build`` note each pipeline's first build, once it succeeded; a second call does
    nothing."""
    original = pipeline_class.build
    if getattr(original, "notes_builds", False):
        return

    def build(self):
        first = not self._built
        original(self)
        if first:
            note_build(self)

    build.notes_builds = True
    build.__doc__ = original.__doc__
    pipeline_class.build = build


class PipelineModuleWatcher:
    """A meta path finder that wraps ``Pipeline.build`` right after ``nvidia.dali.pipeline`` is executed (the
    module is found and loaded by the other finders, as it would be without this one)."""

    name = "nvidia.dali.pipeline"
    watches_dali_builds = True  # how watchers know each other, from another copy of this module too

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "watches_dali_builds", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            wrap_build(module.Pipeline)

        spec.loader.exec_module = exec_module
        return spec


def watch_imports() -> None:
    """Wrap ``Pipeline.build`` now if DALI's pipeline module is imported, else as soon as it is (one watcher per
    process: a pytest started by a test loads this module twice, from its sitecustomize and from its conftest)."""
    module = sys.modules.get(PipelineModuleWatcher.name)
    if module is not None:
        wrap_build(module.Pipeline)
    elif not any(getattr(f, "watches_dali_builds", False) for f in sys.meta_path):
        sys.meta_path.insert(0, PipelineModuleWatcher())
