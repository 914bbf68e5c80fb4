"""The benchmark scripts still run (tiny sizes, CPU); their figures are not checked, only their output's shape."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def test_stage_overhead_reports_every_variant(tmp_path):
    import stage_overhead

    out = tmp_path / "overhead.json"
    rows = stage_overhead.main(["--images", "16", "--rounds", "1", "--batches", "1", "--json", str(out)])
    assert set(rows) == {"none", "cutmix", "cutmix-ops", "mix", "composition", "python-fn"}
    saved = json.loads(out.read_text())
    assert saved["batch"] == 64 and set(saved["variants"]) == set(rows)
    assert all({"ratio_median", "stage_ms_per_batch", "stage_share_of_pipeline"} <= set(v) for v in rows.values())


def test_gpu_check_runs_its_checks_on_the_cpu(tmp_path):
    import gpu_check

    out = tmp_path / "gpu_check.json"
    results = gpu_check.main(["--device", "cpu", "--batch", "8", "--images", "16", "--batches", "1",
                              "--repeats", "1", "--out", str(out)])
    assert results["max_pixel_error_cutmix"] == 0 and results["max_pixel_error_mix"] <= 1
    assert {"pipeline_images_per_s_cutmix", "stage_ms_cutmix", "cutmix_share_of_pipeline"} <= set(results)
    assert json.loads(out.read_text())["device"] == "cpu"
