"""``benchmarks/checkpoint_cost/measure.py`` at tiny sizes (CPU): what each at-scale part writes, and that a
restored pipeline's first batch is the uninterrupted epoch's next one. No figure is checked: they are timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "checkpoint_cost" / "measure.py"


def measure(*args, timeout=240):
    """``python benchmarks/checkpoint_cost/measure.py ARGS`` from the repository root: the finished process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("part", ["file-list", "image-list", "shards"])
def test_part_writes_its_key_and_restores_exactly(tmp_path, part):
    (tmp_path / "checkpoint_cost.json").write_text(json.dumps({"demo": {"kept": 1}, "command": "old"}))
    args = ["--part", part, "--samples", 600, "--batch-size", 32, "--repeats", 1, "--shard-samples", 250,
            "--out", tmp_path]
    result = measure(*args)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "checkpoint_cost.json").read_text())
    assert written["demo"] == {"kept": 1}  # the other parts' figures stay, anything else goes
    assert set(written) == {"demo", part}
    figures = written[part]
    assert figures == json.loads(result.stdout)
    assert figures["command"] == "PYTHONPATH=. python benchmarks/checkpoint_cost/measure.py " + " ".join(map(str, args))
    assert figures["samples"] == 600 and figures["batch_size"] == 32 and figures["steps_per_epoch"] == 18
    assert figures["reader_meta"]["epoch_size"] == 600
    assert figures["reader_meta"]["pad_last_batch"] == 1
    steps = ["1", "9", "17"]  # early, the middle, the last full step but one
    assert sorted(figures["restored"], key=int) == steps
    assert sorted(figures["checkpoint_bytes"], key=int) == steps
    for step in steps:
        restored = figures["restored"][step]
        assert restored["samples_skipped"] == int(step) * 32
        assert restored["first_batch_matches_uninterrupted"] is True
        assert set(restored) >= {"define_s", "build_s", "first_batch_s", "total_s", "builds_s", "totals_s"}
        assert len(restored["totals_s"]) == 1
    assert set(figures["fresh"]) == {"define_s", "build_s", "first_batch_s", "total_s", "builds_s", "totals_s"}
    assert "restore_build_s_per_100k_skipped" in figures
    assert ("build_over_missing_files" in figures) == (part == "file-list")
    if part == "file-list":
        assert figures["build_over_missing_files"]["built"] is True
    if part == "shards":
        assert figures["shards"] == 3  # 600 samples in shards of 250
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_argument_is_one_line_and_writes_nothing(tmp_path):
    result = measure("--part", "file-list", "--samples", 0, "--out", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("--samples must be at least 1, got 0")
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())
