"""The check that every CPU test that builds a DALI pipeline has its GPU twin (tests/pipeline_builds.py), run on a
small suite of its own in a pytest subprocess: what it fails on, what it lets pass, and that ``-k``, ``-m`` and a
single test id do not trip it."""

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

import pytest

sys.path.insert(0, {str(TESTS)!r})
from pipeline_builds import TwinCheck  # noqa: E402

DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]
EXEMPT = {{EXEMPT}}


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: the GPU half")
    config.pluginmanager.register(TwinCheck(DEVICES, exempt=EXEMPT), "pipeline-twins")


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "gpu":
        pytest.skip("no GPU in this check's own suite")
    return request.param
"""

SUITE = '''
import subprocess
import sys

import pytest

BUILD = """
from nvidia.dali import fn, pipeline_def, types

@pipeline_def(batch_size=2, num_threads=1, device_id=None)
def pipe():
    return fn.random.uniform(range=[0, 1], dtype=types.FLOAT)

p = pipe()
p.build()
p.run()
"""


def test_untwinned_build():
    exec(BUILD, {})


def test_twinned_build(device):
    exec(BUILD, {})


@pytest.mark.parametrize("device, size", [("cpu", 1), pytest.param("gpu", 1, marks=pytest.mark.gpu)])
def test_twinned_by_its_own_parametrize(device, size):
    if device == "gpu":
        pytest.skip("no GPU")
    exec(BUILD, {})


@pytest.mark.parametrize("device", ["cpu"])
def test_parametrized_on_the_cpu_only(device):
    exec(BUILD, {})


def test_exempt_build():
    exec(BUILD, {})


def test_build_in_a_subprocess():
    subprocess.run([sys.executable, "-c", BUILD], check=True)


def test_without_a_build():
    pass


@pytest.mark.gpu
def test_gpu_half():
    exec(BUILD, {})
'''


def run_suite(folder, *args, exempt=("test_exempt_build",)):
    """pytest on the check's own suite in ``folder`` with ``args``, the check's list naming the tests ``exempt``:
    the finished process."""
    def keys(names):
        return {f"tests/test_suite.py::{name}": "a reason" for name in names}

    (folder / "tests").mkdir(exist_ok=True)
    (folder / "tests" / "conftest.py").write_text(CONFTEST.replace("{EXEMPT}", repr(keys(exempt))))
    (folder / "tests" / "test_suite.py").write_text(textwrap.dedent(SUITE))
    (folder / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=folder,
                          capture_output=True, text=True, timeout=240, env=dict(os.environ))


def flagged(result):
    """The tests the check's report names (no test of the suite fails by itself)."""
    return sorted(line.split()[1] for line in result.stdout.splitlines() if line.startswith("FAILED "))


def test_the_check_fails_on_cpu_builds_without_a_gpu_twin_only(tmp_path):
    result = run_suite(tmp_path)
    assert result.returncode == 1, result.stdout
    assert flagged(result) == ["tests/test_suite.py::test_build_in_a_subprocess",
                               "tests/test_suite.py::test_parametrized_on_the_cpu_only[cpu]",
                               "tests/test_suite.py::test_untwinned_build"], result.stdout
    assert "6 CPU tests built a pipeline: 2 with a GPU twin, 1 exempt with a reason\n" in result.stdout
    assert "8 passed, 2 skipped" in result.stdout, "every test itself passed (the GPU half's build is not counted)"


@pytest.mark.parametrize("args", [("-k", "twinned_build and not untwinned"), ("-m", "not gpu", "-k", "twinned_by"),
                                  ("tests/test_suite.py::test_twinned_build[cpu]",),
                                  ("tests/test_suite.py::test_twinned_by_its_own_parametrize",)])
def test_a_selection_whose_twins_are_left_out_does_not_trip_it(tmp_path, args):
    result = run_suite(tmp_path, *args)
    assert result.returncode == 0, result.stdout
    assert flagged(result) == [] and "with a GPU twin" in result.stdout


def test_an_exemption_that_no_longer_holds_fails_the_run(tmp_path):
    result = run_suite(tmp_path, "-k", "without_a_build or (twinned_build and not untwinned)",
                       exempt=("test_without_a_build", "test_twinned_build"))
    assert result.returncode == 1, result.stdout
    assert [line for line in result.stdout.splitlines() if line.startswith("FAILED ")] == [
        "FAILED tests/test_suite.py::test_twinned_build is exempt but has a GPU twin: drop it from EXEMPT",
        "FAILED tests/test_suite.py::test_without_a_build is exempt but passed without building a DALI pipeline "
        "on the CPU: drop it from EXEMPT"], result.stdout
