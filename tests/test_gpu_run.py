"""``benchmarks/gpu_run.sh``, the one GPU script, in its parts that need no GPU: usage, the check that python
imports this tree's ``dali_cutmix``, and a step that dies leaving the others and a summary. (CI runs the whole
``--dry-run``; these run in seconds.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_run.sh"
HEAVY = "tests sanitizer profile-cutmix profile-mixup profile-switch train tests-cli"


def gpu_run(*args, python=sys.executable, timeout=240, **env):
    """``bash benchmarks/gpu_run.sh ARGS`` with ``$PYTHON`` and extra environment ``env``: the finished process."""
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": str(python), **env}, cwd="/")


def test_bad_usage_exits_2():
    for args in ((), ("--dry-run",), ("a", "b"), ("--fast", "out")):
        result = gpu_run(*args)
        assert result.returncode == 2 and result.stderr == "usage: bash benchmarks/gpu_run.sh [--dry-run] OUT\n"


def test_a_stale_dali_cutmix_stops_the_run_before_any_step(tmp_path):
    stale = tmp_path / "stale" / "dali_cutmix"
    stale.mkdir(parents=True)
    (stale / "__init__.py").write_text("")
    python = tmp_path / "python"  # a python that finds another dali_cutmix before the tree's
    python.write_text(f'#!/bin/sh\nPYTHONPATH={stale.parent} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    out = tmp_path / "out"
    result = gpu_run("--dry-run", out, python=python, GPU_RUN_SKIP="doctor demo " + HEAVY)
    assert result.returncode == 1
    assert "python imports dali_cutmix from somewhere else than this tree" in result.stderr
    source = json.loads((out / "source.json").read_text())
    assert source["dali_cutmix"] == str(stale / "__init__.py") and source["from_tree"] is False
    assert list((out / "steps").iterdir()) == [], "no step ran"


def test_a_step_past_its_limit_leaves_the_later_steps_and_the_summary(tmp_path):
    out = tmp_path / "out"
    result = gpu_run("--dry-run", out, GPU_RUN_SKIP=HEAVY, GPU_RUN_TIMEOUT_DOCTOR="1",
                     DALI_CUTMIX_CACHE=str(tmp_path / "cache"))
    assert result.returncode == 1, result.stderr
    steps = {p.stem: json.loads(p.read_text()) for p in (out / "steps").glob("*.json")}
    assert set(steps) == {"doctor", "demo"}
    assert steps["doctor"]["status"] == "timed-out" and steps["doctor"]["rc"] == 124
    assert steps["doctor"]["timeout"] == 1 and steps["doctor"]["command"][0] == "bash"
    assert steps["demo"]["status"] == "passed" and (out / "demo" / "train").is_dir()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "dry-run" and summary["passed"] is False and set(summary["steps"]) == set(steps)
    assert summary["source"]["from_tree"] is True
    assert summary["source"]["dali_cutmix"] == str(ROOT / "dali_cutmix" / "__init__.py")
    text = (out / "summary.txt").read_text().splitlines()
    assert text[0] == "gpu_run (dry-run): NOT passed"
    assert text[1].split()[:2] == ["doctor", "timed-out"] and text[2].split()[:2] == ["demo", "passed"]
    assert result.stdout.endswith((out / "summary.txt").read_text()), "the table is printed last"
    for name in HEAVY.split():
        assert f"gpu_run: {name} skipped (GPU_RUN_SKIP)" in result.stdout


def test_a_failed_roi_decode_makes_the_profile_and_training_decode_whole_images(tmp_path):
    """doctor's ROI-decode smoke test failing (nvImageCodec issue #55) switches the later steps to --decode full."""
    doctor = {"verdict": "the GPU path can run", "checks": [{"name": "roi decode", "status": "warn"}],
              "facts": {"gpus": [{"name": "a GPU"}], "roi_decode": "failed", "roi_decode_detail": "died"}}
    python = tmp_path / "python"  # doctor answers as on a GPU whose ROI decoding died; the rest runs for real
    python.write_text(f'#!/bin/sh\nif [ "$1 $2 $3" = "-m dali_cutmix.cli doctor" ]; then\n'
                      f"  echo '{json.dumps(doctor)}'; exit 0\nfi\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    out = tmp_path / "out"
    result = gpu_run("--dry-run", out, python=python, GPU_RUN_SKIP="tests sanitizer profile-mixup profile-switch tests-cli",
                     DALI_CUTMIX_CACHE=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "doctor's ROI decoding failed: the profile and training decode whole images" in result.stdout
    steps = {p.stem: json.loads(p.read_text()) for p in (out / "steps").glob("*.json")}
    assert set(steps) == {"doctor", "profile-cutmix", "demo", "train"}
    for name in ("profile-cutmix", "train"):
        command = steps[name]["command"]
        assert steps[name]["status"] == "passed" and command[command.index("--decode") + 1] == "full", command
    assert json.loads((out / "profile-cutmix.json").read_text())["settings"]["decode"] == "full"
    assert json.loads((out / "summary.json").read_text())["doctor"]["roi_decode"] == "warn"
