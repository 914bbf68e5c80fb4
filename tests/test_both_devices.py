"""The check that every test that builds a DALI pipeline runs on both devices (tests/both_devices.py), run on a
small suite of its own in a pytest subprocess: what it fails on, what it lets pass, and that ``-k``, ``-m`` and
single test ids neither trip it nor hide a problem."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CONFTEST = f"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, {str(TESTS)!r})
from both_devices import BothDevices  # noqa: E402

DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: the GPU half")
    config.addinivalue_line("markers", "one_device(reason): the same on every machine")
    config.pluginmanager.register(BothDevices(Path(__file__).parent), "both-devices")


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "gpu":
        pytest.skip("no GPU in this check's own suite")
    return request.param


@pytest.fixture
def on(device):
    return dict(device_id=None)
"""

#: A helper module of the check's suite: a pipeline builder, and two functions that call each other.
HELPERS = '''
from nvidia.dali import fn, pipeline_def, types


def built(device_id=None):
    @pipeline_def(batch_size=2, num_threads=1, device_id=device_id)
    def pipe():
        return fn.random.uniform(range=[0, 1], dtype=types.FLOAT)

    p = pipe()
    p.build()
    return p


def ping(n):
    return pong(n - 1) if n else 0


def pong(n):
    return ping(n)
'''

#: Tests the check lets pass.
GOOD = '''
import pytest
import suite_helpers
from suite_helpers import built, ping

from dali_cutmix import native


def test_builds_on_its_device(device):
    built().run()


def test_builds_through_a_fixture_that_takes_device(on):
    built(**on).run()


@pytest.mark.parametrize("size", [1, 2])
def test_parametrized_otherwise(size, device):
    built().run()


@pytest.mark.gpu
def test_gpu_only():
    pytest.skip("no GPU")
    built(0)


@pytest.mark.one_device(reason="a CPU pipeline on every machine")
def test_one_device_with_its_reason():
    suite_helpers.built().run()


def test_without_a_build():
    assert ping(3) == 0


def test_the_native_operators_build_is_no_pipeline():
    if False:
        native.build()
'''

#: Tests the check fails on, each with the way it builds.
BAD = '''

def test_builds_without_device():
    built().run()


def test_builds_through_a_helper_module_attribute():
    suite_helpers.built().run()


def test_builds_inline():
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        return fn.random.uniform(range=[0, 1])


def test_builds_through_a_local_helper():
    local_helper()


def local_helper():
    return built()


@pytest.mark.parametrize("device", ["cpu"])
def test_parametrizes_device_itself(device):
    built()


@pytest.mark.one_device
def test_one_device_without_a_reason():
    built()


@pytest.mark.one_device(reason="a reason")
def test_one_device_without_a_build():
    pass


@pytest.mark.one_device(reason="a reason")
def test_one_device_on_both_devices(device):
    built()
'''

FLAGGED = [
    "test_suite.py::test_builds_without_device builds a DALI pipeline (built -> pipeline_def) without the `device` "
    "fixture",
    "test_suite.py::test_builds_through_a_helper_module_attribute builds a DALI pipeline (suite_helpers.built -> "
    "pipeline_def) without the `device` fixture",
    "test_suite.py::test_builds_inline builds a DALI pipeline (pipeline_def) without the `device` fixture",
    "test_suite.py::test_builds_through_a_local_helper builds a DALI pipeline (local_helper -> built -> "
    "pipeline_def) without the `device` fixture",
    "test_suite.py::test_parametrizes_device_itself parametrizes `device` itself",
    "test_suite.py::test_one_device_without_a_reason is marked one_device without a reason",
    "test_suite.py::test_one_device_without_a_build is marked one_device but builds no DALI pipeline",
    "test_suite.py::test_one_device_on_both_devices is marked one_device and takes `device`",
]


def run_suite(folder, *args, bad=False):
    """pytest on the check's own suite in ``folder`` (its good tests, and its bad ones with ``bad``) with ``args``:
    the finished process."""
    folder.mkdir(exist_ok=True)
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "suite_helpers.py").write_text(textwrap.dedent(HELPERS))
    (folder / "test_suite.py").write_text(textwrap.dedent(GOOD) + (textwrap.dedent(BAD) if bad else ""))
    (folder / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=folder,
                          capture_output=True, text=True, timeout=240, env=dict(os.environ))


def problems(result) -> list[str]:
    """The lines of the check's message, after its first."""
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if "must run on both devices" in line)
    return [line for line in lines[start + 1:] if line]


@pytest.mark.parametrize("args", [(), ("--collect-only",), ("-k", "builds_on_its_device"), ("-m", "gpu")])
def test_the_check_fails_the_collection_naming_each_test_and_how_it_builds(tmp_path, args):
    result = run_suite(tmp_path / "suite", *args, bad=True)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    found = problems(result)
    assert len(found) == len(FLAGGED), found
    for line, start in zip(found, FLAGGED):
        assert line.startswith(start), (line, start)


@pytest.mark.parametrize("args", [(), ("-m", "gpu"), ("-m", "not gpu"), ("-k", "builds_on"),
                                  ("test_suite.py::test_builds_on_its_device[cpu]",),
                                  ("test_suite.py::test_one_device_with_its_reason",)])
def test_a_suite_that_follows_the_rule_passes_whatever_is_selected(tmp_path, args):
    result = run_suite(tmp_path / "suite", *args)
    assert result.returncode in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED), \
        result.stdout + result.stderr
    assert "must run on both devices" not in result.stdout + result.stderr


def test_the_good_suite_runs_each_test_on_the_cpu_and_collects_its_gpu_half(tmp_path):
    result = run_suite(tmp_path / "suite", "-rs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 passed, 5 skipped" in result.stdout, result.stdout
    gpu = run_suite(tmp_path / "suite", "--collect-only", "-m", "gpu")
    assert [line for line in gpu.stdout.splitlines() if "::" in line] == [
        "test_suite.py::test_builds_on_its_device[gpu]",
        "test_suite.py::test_builds_through_a_fixture_that_takes_device[gpu]",
        "test_suite.py::test_parametrized_otherwise[gpu-1]", "test_suite.py::test_parametrized_otherwise[gpu-2]",
        "test_suite.py::test_gpu_only"], gpu.stdout
