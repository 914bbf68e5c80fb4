"""Which tests build a DALI pipeline, noted as they run, and the check that each one on the CPU has a GPU twin.

How builds are noted (``tests/build_notes.py``): while a test's body runs, a file is named in the environment, and
every pipeline's first ``nvidia.dali.Pipeline.build()`` appends a line to it. In this process ``Pipeline.build`` is
wrapped directly; in the processes a test starts (the CLI in a subprocess, torchrun's ranks, ``python -c``), a
``sitecustomize`` put first on ``PYTHONPATH`` wraps it when ``nvidia.dali.pipeline`` is first imported. Builds made
while fixtures are set up are not the test's: data made for many tests (scans of a fixture's tree, shards) is not
counted.

The check, at the end of every run: a test on the CPU side (neither marked ``gpu`` nor parametrized with
``device="gpu"``) that built a CPU-only pipeline (``device_id`` None) must be parametrized over ``device`` with
"gpu" among its values (its GPU twin, collected or not in this run: ``-k``, ``-m`` and single files cannot trip
the check), or be listed in :data:`EXEMPT` (with the reason it means nothing on a GPU). Anything else fails the run, naming each test. An exemption that no longer
holds (the test has a GPU twin, or passed without building a CPU pipeline) fails it too, so the list stays true.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import build_notes
import pytest

#: Tests (``file::function``, all their parameters) that build a pipeline on the CPU only, and why a GPU twin would
#: mean nothing.
SCAN_IS_CPU = ("`dali-cutmix scan --mode full` decodes on the CPU on every machine (pipelines/scan.py builds its "
               "pipeline with device_id=None and a CPU decoder): a GPU twin would run the same CPU pipeline")
READER_ONLY = ("runs DALI's reader alone (no decoder, no pixel operator: the files' bytes and labels): a reader "
               "runs on the CPU on every machine, so a GPU twin would run the same CPU pipeline")
EXEMPT: dict[str, str] = {
    "tests/test_shards.py::test_round_trip_every_usable_image_once_with_its_bytes_and_label": READER_ONLY,
    "tests/test_shards.py::test_two_ranks_read_disjoint_shards_that_cover_the_data": READER_ONLY,
    "tests/test_stage.py::test_a_channels_first_layout_is_refused_on_the_cpu":
        "the layout is read by the CPU stage's own pixel operator (DaliCutmixApply), which the GPU path does not "
        "have (it pastes and blends with DALI's operators); the refusal both devices share, by shape, is "
        "test_channels_first_images_are_refused",
    "tests/test_dali_messages.py::test_the_file_reader_names_a_missing_or_empty_file": READER_ONLY,
    "tests/test_dali_messages.py::test_without_mmap_the_file_reader_says_could_not_open": READER_ONLY,
    "tests/test_dali_messages.py::test_an_s3_endpoint_that_went_away_is_curls_could_not_connect": READER_ONLY,
    "tests/test_dali_messages.py::test_an_s3_endpoint_that_stopped_answering_is_curls_timeout": READER_ONLY,
    "tests/test_scan.py::test_scan_finds_exactly_the_bad_files_in_both_modes": SCAN_IS_CPU,
    "tests/test_scan.py::test_full_mode_finds_what_only_decoding_shows": SCAN_IS_CPU,
    "tests/test_readme.py::test_the_command_line_block_runs_and_writes_what_it_says":
        "the README's data-tools block runs scan, preview and shard with their defaults, which are the CPU on every "
        "machine (preview's --device defaults to cpu): on a GPU machine it runs the same CPU pipelines; the GPU "
        "preview is test_cli_preview's",
    "tests/test_checkpoint_cost.py::test_part_writes_its_key_and_restores_exactly":
        "runs benchmarks/checkpoint_cost/measure.py, which measures DALI's reader restore (a reader and its "
        "checkpoint are the CPU's on every machine) on the CPU pipeline by design",
    "tests/test_gpu_run.py::test_a_failed_roi_decode_makes_the_profile_and_training_decode_whole_images":
        "runs benchmarks/gpu_run.sh --dry-run, the script's CPU mode by definition; its GPU mode is the GPU run "
        "itself, which runs this test's GPU half (the profile and the trainer on the GPU) as its own steps",
}

PARAMETER_SET = type(pytest.param(None))  # what pytest.param returns (its class is not public API)


def function_key(item) -> str:
    """``tests/test_x.py::test_name``: a test function, all its parameters."""
    return f"{Path(item.path).relative_to(item.config.rootpath).as_posix()}::{item.originalname}"


def device_values(item, fixture_devices) -> list[str] | None:
    """The devices the test function ``item`` is parametrized over (its ``parametrize`` marks naming ``device``,
    or the ``device`` fixture's ``fixture_devices``), or None when it is not parametrized over ``device``."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "device" not in callspec.params:
        return None
    for mark in item.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs["argnames"]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if "device" not in names:
            continue
        index, values = names.index("device"), []
        for value in (mark.args[1] if len(mark.args) > 1 else mark.kwargs["argvalues"]):
            if isinstance(value, PARAMETER_SET):
                values.append(value.values[index])
            else:
                values.append(value if len(names) == 1 else value[index])
        return values
    return list(fixture_devices)


class TwinCheck:
    """The pytest plugin: notes each test's pipeline builds and checks, at the end, that each CPU test that built
    one has its GPU twin (see the module's docstring)."""

    def __init__(self, fixture_devices, exempt=EXEMPT):
        """``fixture_devices``: the ``device`` fixture's params; ``exempt``: as :data:`EXEMPT` (a test of the
        check passes its own)."""
        self.fixture_devices = [p.values[0] if isinstance(p, PARAMETER_SET) else p for p in fixture_devices]
        self.exempt = exempt
        self.folder = Path(tempfile.mkdtemp(prefix="pipeline-builds-"))
        self.built: set[str] = set()  # nodeids of the tests that built a CPU-only pipeline (device_id None)
        self.outcomes: dict[str, str] = {}
        self.items: dict[str, object] = {}
        self.problems: dict[str, None] = {}  # ordered, each once
        self.counts = dict(cpu_built=0, twinned=0, exempt=0)

    # ------------------------------------------------------------------ noting
    def pytest_configure(self, config):
        os.environ.pop(build_notes.LOG_VARIABLE, None)  # a pytest a test started notes its own tests, not that one
        (self.folder / "sitecustomize.py").write_text(build_notes.sitecustomize())
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(self.folder)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        build_notes.watch_imports()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        log = self.folder / f"{len(self.items)}.log"
        self.items[item.nodeid] = item
        os.environ[build_notes.LOG_VARIABLE] = str(log)
        try:
            return (yield)
        finally:
            del os.environ[build_notes.LOG_VARIABLE]
            if log.exists() and any(line.split()[1] == "None" for line in log.read_text().splitlines()):
                self.built.add(item.nodeid)

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            self.outcomes.setdefault(report.nodeid, report.outcome)

    # ------------------------------------------------------------------ judging
    @staticmethod
    def cpu_side(item) -> bool:
        """Whether ``item`` is in the CPU half: not marked ``gpu``, not parametrized with ``device="gpu"``."""
        callspec = getattr(item, "callspec", None)
        return item.get_closest_marker("gpu") is None and (callspec is None or callspec.params.get("device") != "gpu")

    def judge(self) -> None:
        """Fill :attr:`problems` and :attr:`counts`: CPU tests that built a CPU pipeline with no GPU twin, and
        exemptions that no longer hold."""
        exempt_seen: dict[str, list[bool]] = {}
        for nodeid, item in self.items.items():
            key = function_key(item)
            built = nodeid in self.built
            values = device_values(item, self.fixture_devices)
            twinned = values is not None and "gpu" in values
            if key in self.exempt:
                exempt_seen.setdefault(key, []).append(built)
                if twinned:
                    self.problems[f"{key} is exempt but has a GPU twin: drop it from EXEMPT"] = None
            if not built or not self.cpu_side(item):
                continue
            self.counts["cpu_built"] += 1
            if twinned:
                self.counts["twinned"] += 1
            elif key in self.exempt:
                self.counts["exempt"] += 1
            else:
                self.problems[f"{nodeid} built a DALI pipeline on the CPU and has no GPU twin: parametrize it over "
                              f"the `device` fixture, or list it in EXEMPT (tests/pipeline_builds.py) with the "
                              f"reason it means nothing on a GPU"] = None
        for key, builds in exempt_seen.items():
            nodeids = [n for n, i in self.items.items() if function_key(i) == key]
            if not any(builds) and all(self.outcomes.get(n) == "passed" for n in nodeids):
                self.problems[f"{key} is exempt but passed without building a DALI pipeline on the CPU: drop it "
                              f"from EXEMPT"] = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        self.judge()
        if self.problems and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        counts = self.counts
        if not counts["cpu_built"] and not self.problems:
            return
        terminalreporter.section("GPU twins of the tests that build a DALI pipeline")
        terminalreporter.write_line(
            f"{counts['cpu_built']} CPU tests built a pipeline: {counts['twinned']} with a GPU twin, "
            f"{counts['exempt']} exempt with a reason")
        for problem in self.problems:
            terminalreporter.write_line(f"FAILED {problem}", red=True)

    def pytest_unconfigure(self, config):
        for path in self.folder.iterdir():
            path.unlink()
        self.folder.rmdir()
